"""API keys with roles: `read` (insights, profiles) and `admin` (also operations and
key management). Shown once, stored as a hash, revocable at once. Write keys belong to
sources (`touchpoints.collect.sources`) and can only collect."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from touchpoints.collect.keys import WRITE_KEY_PREFIX, hash_key, new_key
from touchpoints.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import API_KEYS

ROLES = ("read", "admin")
#: What each role may do; a role includes everything of the roles before it.
ROLE_RANK = {"read": 1, "admin": 2}
KEY_PREFIX = {"read": "tpr_", "admin": "tpa_"}


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "key_prefix": self.key_prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def add_key(warehouse: Warehouse, name: str, role: str) -> tuple[ApiKey, str]:
    """Make a key; returns it and its secret (the only time the secret is known)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}", field="role")
    if not name or len(name) > 80:
        raise InvalidInput("a key needs a name of 1 to 80 characters", field="name")
    secret = new_key(KEY_PREFIX[role])
    key = ApiKey("key_" + hash_key(secret)[:12], name, role, secret[:8], datetime.now(UTC), None)
    warehouse.insert(
        "api_keys",
        pa.Table.from_pylist(
            [{**{k: v for k, v in key.__dict__.items()}, "key_hash": hash_key(secret)}],
            schema=API_KEYS.to_pyarrow(),
        ),
    )
    return key, secret


def list_keys(warehouse: Warehouse) -> list[ApiKey]:
    rows = warehouse.table("api_keys").order_by("created_at").to_pyarrow().to_pylist()
    return [
        ApiKey(r["key_id"], r["name"], r["role"], r["key_prefix"], r["created_at"], r["revoked_at"])
        for r in rows
    ]


def revoke_key(warehouse: Warehouse, key_id: str) -> ApiKey:
    """Revoke a key: every request with it fails from now on."""
    keys = {k.key_id: k for k in list_keys(warehouse)}
    if key_id not in keys:
        raise NotFound(f"no key {key_id!r}", field="key_id")
    found = keys[key_id]
    if found.revoked_at is None:
        now = datetime.now(UTC)
        warehouse.update_rows("api_keys", "key_id", key_id, {"revoked_at": now})
        found = ApiKey(**{**found.__dict__, "revoked_at": now})
    return found


class KeyChecker:
    """Answers 'may this credential do that?' for the API (a revocation counts at once:
    nothing is cached)."""

    def __init__(self, warehouse: Warehouse, control_token: str | None = None) -> None:
        self._warehouse = warehouse
        self._control_token = control_token
        self._lock = threading.Lock()

    def require(self, credential: str | None, role: str) -> str:
        """The role of `credential` if it is at least `role`; else 401 or 403."""
        if not credential:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer <key>)", field="Authorization"
            )
        if self._control_token is not None and hmac.compare_digest(
            credential.encode(), self._control_token.encode()
        ):
            return "admin"
        if credential.startswith(WRITE_KEY_PREFIX):
            raise Forbidden(
                "a write key can only send events; use a read or admin key", field="Authorization"
            )
        digest = hash_key(credential)
        with self._lock, self._warehouse.lock:
            table = self._warehouse.table("api_keys")
            rows = table.filter(table.key_hash == digest).to_pyarrow().to_pylist()
        if not rows or rows[0]["revoked_at"] is not None:
            raise Unauthorized("the API key is not known or was revoked", field="Authorization")
        found = rows[0]["role"]
        if ROLE_RANK[found] < ROLE_RANK[role]:
            raise Forbidden(f"this needs an {role} key; this key is {found}", field="Authorization")
        return found
