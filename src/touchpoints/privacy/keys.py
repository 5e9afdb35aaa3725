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
from touchpoints.privacy.audit import CONTROL_ACTOR
from touchpoints.privacy.audit import record as audit
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


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the key id (`cli` for the server's control token) and role."""

    key_id: str
    role: str

    def check(self, role: str) -> None:
        """Forbidden unless this caller's role is at least `role`."""
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise Forbidden(
                f"this needs an {role} key; this key is {self.role}", field="Authorization"
            )


def key_id_of(secret: str) -> str:
    """The public id of a key, from its secret."""
    return "key_" + hash_key(secret)[:12]


def add_key(
    warehouse: Warehouse,
    name: str,
    role: str,
    *,
    actor: str = CONTROL_ACTOR,
    reason: str | None = None,
) -> tuple[ApiKey, str]:
    """Make a key; returns it and its secret (the only time the secret is known). The
    audit log gets a `key.add` entry by `actor`."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}", field="role")
    if not name or len(name) > 80:
        raise InvalidInput("a key needs a name of 1 to 80 characters", field="name")
    secret = new_key(KEY_PREFIX[role])
    key = ApiKey(key_id_of(secret), name, role, secret[:8], datetime.now(UTC), None)
    with warehouse.lock:
        warehouse.insert(
            "api_keys",
            pa.Table.from_pylist(
                [{**{k: v for k, v in key.__dict__.items()}, "key_hash": hash_key(secret)}],
                schema=API_KEYS.to_pyarrow(),
            ),
        )
        audit(
            warehouse,
            actor,
            "key.add",
            reason=reason,
            details={"key_id": key.key_id, "name": name, "role": role},
        )
    return key, secret


def list_keys(warehouse: Warehouse) -> list[ApiKey]:
    rows = warehouse.table("api_keys").order_by("created_at").to_pyarrow().to_pylist()
    return [
        ApiKey(r["key_id"], r["name"], r["role"], r["key_prefix"], r["created_at"], r["revoked_at"])
        for r in rows
    ]


def revoke_key(
    warehouse: Warehouse,
    key_id: str,
    *,
    actor: str = CONTROL_ACTOR,
    reason: str | None = None,
) -> ApiKey:
    """Revoke a key: every request with it fails from now on. The audit log gets a
    `key.revoke` entry by `actor` (none when the key was revoked before)."""
    with warehouse.lock:
        keys = {k.key_id: k for k in list_keys(warehouse)}
        if key_id not in keys:
            raise NotFound(f"no key {key_id!r}", field="key_id")
        found = keys[key_id]
        if found.revoked_at is None:
            now = datetime.now(UTC)
            warehouse.update_rows("api_keys", "key_id", key_id, {"revoked_at": now})
            found = ApiKey(**{**found.__dict__, "revoked_at": now})
            audit(
                warehouse,
                actor,
                "key.revoke",
                reason=reason,
                details={"key_id": key_id, "name": found.name, "role": found.role},
            )
    return found


class KeyChecker:
    """Answers 'may this credential do that?' for the API (a revocation counts at once:
    nothing is cached)."""

    def __init__(self, warehouse: Warehouse, control_token: str | None = None) -> None:
        self._warehouse = warehouse
        self._control_token = control_token
        self._lock = threading.Lock()

    def require(self, credential: str | None, role: str) -> Caller:
        """The caller with `credential` if its role is at least `role`; else 401 or 403."""
        caller = self.identify(credential)
        caller.check(role)
        return caller

    def identify(self, credential: str | None) -> Caller:
        """The caller with `credential` (key id and role); 401 when there is none or it
        is unknown or revoked, 403 for a write key."""
        if not credential:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer <key>)", field="Authorization"
            )
        if self._control_token is not None and hmac.compare_digest(
            credential.encode(), self._control_token.encode()
        ):
            return Caller(CONTROL_ACTOR, "admin")
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
        return Caller(rows[0]["key_id"], rows[0]["role"])
