"""Webhook endpoints: where to send, for which consent purpose, how hard to retry, and
the secret each request is signed with.

A definition is checked whole before anything is stored, and an error names the field.
The signing secret is made on the first save and shown once; the warehouse keeps it
sealed with its key (`warehouse.vault`), like any personal value. Rotating it makes a
new one, shown once too; from then on every attempt is signed with the new secret.

The signature scheme (what a receiver checks, see `verify_signature`):
`Touchpoints-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import pyarrow as pa

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.privacy import audit
from touchpoints.privacy.consent_config import load_config
from touchpoints.warehouse import Warehouse

__all__ = [
    "DEFAULTS",
    "endpoint",
    "list_webhooks",
    "rotate_secret",
    "save_webhook",
    "sign",
    "signing_secret",
    "verify_signature",
]

TABLE = "webhooks"
SECRET_FIELD = "webhook_secret"
SIGNATURE_HEADER = "Touchpoints-Signature"
DELIVERY_HEADER = "Touchpoints-Delivery"
#: What a definition holds when a field is not given.
DEFAULTS: Mapping[str, Any] = {
    "purpose": "personalization",
    "max_attempts": 6,
    "backoff_seconds": 30,
    "max_backoff_seconds": 3600,
    "timeout_seconds": 10,
}
#: (smallest, largest) of each number, and whether it must be a whole number.
LIMITS: Mapping[str, tuple[float, float, bool]] = {
    "max_attempts": (1, 20, True),
    "backoff_seconds": (0.001, 86_400, False),
    "max_backoff_seconds": (0.001, 7 * 86_400, False),
    "timeout_seconds": (0.05, 60, False),
}
FIELDS = ("url", *DEFAULTS)
MAX_URL = 2000
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Path words of the REST API under /v1/webhooks/, which a webhook cannot be called.
RESERVED = frozenset({"deliveries", "dead-letters"})


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED:
        raise InvalidInput(
            "a webhook name is 1 to 64 lower-case letters, digits, - or _ (not "
            f"{', '.join(sorted(RESERVED))}), not {str(name)[:40]!r}",
            field="name",
        )
    return name


def parse_definition(warehouse: Warehouse, definition: Any) -> dict[str, Any]:
    """The definition with its defaults filled in; InvalidInput naming the bad field."""
    if not isinstance(definition, Mapping):
        raise InvalidInput("a webhook definition is a JSON object", field="definition")
    unknown = sorted(set(definition) - set(FIELDS) - {"name"})
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}; a definition has {', '.join(FIELDS)}",
            field=unknown[0],
        )
    parsed = {"url": _check_url(definition.get("url"))}
    for key, default in DEFAULTS.items():
        value = definition.get(key, default)
        parsed[key] = value if key == "purpose" else _check_number(key, value)
    load_config(warehouse).check_purpose(parsed["purpose"], "purpose")
    if parsed["max_backoff_seconds"] < parsed["backoff_seconds"]:
        raise InvalidInput(
            "max_backoff_seconds must be at least backoff_seconds", field="max_backoff_seconds"
        )
    return parsed


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url is required: the http(s) address to POST to", field="url")
    if len(url) > MAX_URL:
        raise InvalidInput(f"url is longer than {MAX_URL} characters", field="url")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise InvalidInput(f"url is not a valid address: {exc}", field="url") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(
            f"url must be an http:// or https:// address with a host, not {url[:60]!r}",
            field="url",
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url must not hold a user name or password (receivers check the signature)",
            field="url",
        )
    if parts.fragment:
        raise InvalidInput("url must not have a #fragment", field="url")
    return url.strip()


def _check_number(key: str, value: Any) -> int | float:
    low, high, whole = LIMITS[key]
    kind = "a whole number" if whole else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and not isinstance(value, int))
        or not low <= value <= high
    ):
        raise InvalidInput(f"{key} must be {kind} from {low:g} to {high:g}", field=key)
    return value


def _rows(warehouse: Warehouse, name: str | None = None) -> list[dict[str, Any]]:
    with warehouse.lock:  # the Ibis connection is one per process
        table = warehouse.table(TABLE)
        if name is not None:
            table = table.filter(table.name == name)
        return table.order_by("name").to_pyarrow().to_pylist()


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        **orjson.loads(row["definition"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _new_secret() -> str:
    return "tpwh_" + secrets.token_urlsafe(32)


def _sealed(warehouse: Warehouse, secret: str) -> str:
    vault = warehouse.vault
    return vault.seal(SECRET_FIELD, secret, vault.blind(SECRET_FIELD, secret))


def save_webhook(
    warehouse: Warehouse,
    name: str,
    definition: Mapping[str, Any],
    *,
    rotate_secret: bool = False,
    actor: str = "server",
) -> dict[str, Any]:
    """Create or replace a webhook. The answer holds `secret` only when one was made
    (the first save, or `rotate_secret`): it is never shown again."""
    check_name(name)
    if isinstance(definition, Mapping) and definition.get("name", name) != name:
        raise InvalidInput("the name in the body differs from the name in the path", field="name")
    now = datetime.now(UTC)
    secret = None
    with warehouse.lock:
        parsed = parse_definition(warehouse, definition)
        text = orjson.dumps(parsed).decode()
        exists = bool(_rows(warehouse, name))
        if exists:
            values: dict[str, Any] = {"definition": text, "updated_at": now}
            if rotate_secret:
                secret = _new_secret()
                values["secret"] = _sealed(warehouse, secret)
            warehouse.update_rows(TABLE, "name", name, values)
        else:
            secret = _new_secret()
            stamp = pa.array([now], pa.timestamp("us", tz="UTC"))
            row = {
                "name": [name],
                "definition": [text],
                "secret": [_sealed(warehouse, secret)],
                "created_at": stamp,
                "updated_at": stamp,
            }
            warehouse.insert(TABLE, pa.table(row))
        audit.record(
            warehouse,
            actor,
            "webhook.save",
            None,
            None,
            {"name": name, **parsed, "created": not exists, "secret_made": secret is not None},
        )
        answer = {**_public(_rows(warehouse, name)[0]), "created": not exists}
    if secret is not None:
        answer["secret"] = secret
    return answer


def rotate_secret(warehouse: Warehouse, name: str, *, actor: str = "server") -> dict[str, Any]:
    """Give webhook `name` a new signing secret (returned once); its definition stays."""
    found = endpoint(warehouse, name)
    return save_webhook(warehouse, name, found, rotate_secret=True, actor=actor)


def list_webhooks(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every webhook with its definition; never the secret."""
    return [_public(row) for row in _rows(warehouse)]


def endpoint(warehouse: Warehouse, name: str) -> dict[str, Any]:
    """The definition of webhook `name` (NotFound naming `webhook` when there is none)."""
    found = _rows(warehouse, name) if isinstance(name, str) else []
    if not found:
        raise NotFound(f"there is no webhook {str(name)[:64]!r}", field="webhook")
    return orjson.loads(found[0]["definition"])


def signing_secret(warehouse: Warehouse, name: str) -> str:
    """The secret of webhook `name`, opened (only for signing)."""
    found = _rows(warehouse, name)
    if not found:
        raise NotFound(f"there is no webhook {name!r}", field="webhook")
    return str(warehouse.vault.open(SECRET_FIELD, found[0]["secret"]))


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Touchpoints-Signature` header value for `body`, made at `timestamp`
    (unix seconds; the clock now when not given)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: datetime | float | None = None,
    tolerance_seconds: float = 300,
) -> bool:
    """True when `header` (`t=<unix seconds>,v1=<hex>`, several `v1` allowed) signs the
    raw `body` with `secret`, made within `tolerance_seconds` of `now` (which refuses an
    old request replayed by someone who recorded it). For receivers written in Python."""
    if not isinstance(header, str):
        return False
    stamps, digests = [], []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            stamps.append(value)
        elif key == "v1":
            digests.append(value)
    if len(stamps) != 1 or not stamps[0].isdigit() or not digests:
        return False
    t = int(stamps[0])
    clock = time.time() if now is None else now.timestamp() if isinstance(now, datetime) else now
    if abs(clock - t) > tolerance_seconds:
        return False
    expected = sign(secret, body, t).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, d) for d in digests)
