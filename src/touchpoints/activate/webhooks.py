"""Webhooks: a JSON payload POSTed to a configured URL, signed, retried with exponential
backoff, and kept as a dead letter after the last failure, to be replayed.

Signature: header `Touchpoints-Signature: t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256 under the endpoint's secret of `"<t>.<raw body>"`; `Touchpoints-Delivery`
carries the delivery id, the same on every attempt, so a receiver drops repeats. The
secret is shown once when the endpoint is made (or rotated) and stored sealed.

A payload about a person (`customer_id` given) is personal data: the door is asked for
the endpoint's purpose when it is queued and again right before every attempt, so a
withdrawal in between stops it (`denied`); its stored copy is sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import ibis
import orjson
import pyarrow as pa

from touchpoints.activate.gate import may_contact
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.privacy.consent_config import load_config
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import delete_definition, load_definitions, store_definition
from touchpoints.warehouse.schema import WEBHOOK_DEAD_LETTERS, WEBHOOK_DELIVERIES

__all__ = [
    "deliver_due",
    "deliveries",
    "enqueue",
    "list_webhooks",
    "replay",
    "save_webhook",
    "sign",
    "verify_signature",
]

TABLE, KEY = "webhooks", "name"
NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
SIGNATURE_HEADER = "Touchpoints-Signature"
DELIVERY_HEADER = "Touchpoints-Delivery"
DEFAULTS = {
    "max_attempts": 6,
    "backoff_seconds": 30,
    "max_backoff_seconds": 3600,
    "timeout_seconds": 10,
}
LIMITS = {
    "max_attempts": 20,
    "backoff_seconds": 86_400,
    "max_backoff_seconds": 7 * 86_400,
    "timeout_seconds": 120,
}
_DELIVERIES = WEBHOOK_DELIVERIES.to_pyarrow()
_DEAD = WEBHOOK_DEAD_LETTERS.to_pyarrow()
_TS = "timestamp('UTC')"


def _check_definition(warehouse: Warehouse, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput("a webhook is a JSON object", field="body")
    unknown = sorted(set(body) - {"name", "url", "purpose", "rotate_secret", *DEFAULTS})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    url = body.get("url")
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= 2000 else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url is the http(s) address to POST to", field="url")
    out: dict[str, Any] = {"url": url}
    out["purpose"] = load_config(warehouse).check_purpose(body.get("purpose", "personalization"))
    for field, default in DEFAULTS.items():
        value = body.get(field, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= LIMITS[field]:
            raise InvalidInput(f"{field} is a whole number, 1 to {LIMITS[field]}", field=field)
        out[field] = value
    return out


def save_webhook(warehouse: Warehouse, name: str, body: Any) -> dict[str, Any]:
    """Create or change an endpoint. The answer holds `secret` only when one was made
    (a new endpoint, or `rotate_secret: true`): keep it, it is not shown again."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput("name is 1–63 lower-case letters, digits, '_' or '-'", field="name")
    definition = {"name": name, **_check_definition(warehouse, body)}
    with warehouse.lock:
        exists = _secret(warehouse, name) is not None
        made = None
        if not exists or body.get("rotate_secret") is True:
            made = "whsec_" + secrets.token_urlsafe(32)
        extra = {"secret": _seal(warehouse, "webhook_secret", made)} if made else None
        store_definition(warehouse, TABLE, KEY, name, definition, extra)
    return {**definition, **({"secret": made} if made else {})}


def _seal(warehouse: Warehouse, field: str, text: str) -> str:
    return warehouse.vault.seal(field, text, warehouse.vault.blind(field, text))


def _secret(warehouse: Warehouse, name: str) -> str | None:
    hooks = warehouse.table(TABLE)
    found = hooks.filter(hooks[KEY] == name).secret.to_pyarrow().to_pylist()
    if not found or not found[0]:
        return None
    return warehouse.vault.open("webhook_secret", found[0])


def _definition(warehouse: Warehouse, name: str) -> dict[str, Any]:
    for hook in load_definitions(warehouse, TABLE, KEY):
        if hook["name"] == name:
            return hook
    raise NotFound(f"there is no webhook {name!r}", field="webhook")


def list_webhooks(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every endpoint (never its secret)."""
    return load_definitions(warehouse, TABLE, KEY)


def delete_webhook(warehouse: Warehouse, name: str) -> None:
    delete_definition(warehouse, TABLE, KEY, name, "webhook")


def sign(secret: str, body: bytes, at: int) -> str:
    """The signature header value for `body` sent at unix time `at`."""
    digest = hmac.new(secret.encode(), str(at).encode() + b"." + body, hashlib.sha256)
    return f"t={at},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_seconds: int = 300
) -> bool:
    """For receivers: is `header` a valid signature of `body`, made within the tolerance?"""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        at = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - at) > tolerance_seconds:
        return False
    expected = sign(secret, body, at).partition(",v1=")[2]
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").encode())


def enqueue(
    warehouse: Warehouse,
    webhook: str,
    payload: Mapping[str, Any],
    *,
    customer_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Queue one delivery (tried by the next `deliver_due`); `denied` at once when the
    payload is about a person the door refuses for the endpoint's purpose."""
    now = now or datetime.now(UTC)
    with warehouse.lock:
        hook = _definition(warehouse, webhook)
        body = {"id": "dlv_" + uuid.uuid4().hex[:20], "created_at": now.isoformat(), **payload}
        status, error = "pending", None
        if customer_id is not None:
            verdict = may_contact(warehouse, customer_id, hook["purpose"])
            if not verdict.allowed:
                status, error = "denied", verdict.reason
        text = orjson.dumps(body).decode()
        if customer_id is not None:
            text = _seal(warehouse, "webhook_payload", text)
        row = {
            "delivery_id": body["id"],
            "webhook": webhook,
            "customer_id": customer_id,
            "payload": text,
            "status": status,
            "attempts": 0,
            "next_attempt_at": now if status == "pending" else None,
            "last_error": error,
            "created_at": now,
            "delivered_at": None,
        }
        warehouse.insert("webhook_deliveries", pa.Table.from_pylist([row], schema=_DELIVERIES))
    return _public(row)


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    out["payload_bytes"] = len(out.pop("payload") or "")
    return out


def _set(warehouse: Warehouse, delivery_id: str, values: dict[str, Any]) -> None:
    warehouse.update_rows("webhook_deliveries", "delivery_id", delivery_id, values)


def _body(warehouse: Warehouse, row: Mapping[str, Any]) -> bytes:
    text = row["payload"]
    if row["customer_id"] is not None:
        text = warehouse.vault.open("webhook_payload", text)
    return text.encode()


def deliver_due(
    warehouse: Warehouse,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    limit: int = 100,
    only: Sequence[str] | None = None,
) -> dict[str, int]:
    """Attempt the deliveries whose time has come; counts by outcome. The HTTP calls
    happen outside the warehouse lock; a delivery is claimed (its next attempt pushed
    back) before, so an overlapping call does not send it twice."""
    now = now or datetime.now(UTC)
    counts = {"delivered": 0, "retrying": 0, "dead": 0, "denied": 0}
    with warehouse.lock:
        rows = warehouse.table("webhook_deliveries")
        if only is not None:
            rows = rows.filter(rows.delivery_id.isin(list(only)))
        due = (
            rows.filter(
                (rows.status == "pending") & (rows.next_attempt_at <= ibis.literal(now, _TS))
            )
            .order_by("next_attempt_at")
            .limit(limit)
            .to_pyarrow()
            .to_pylist()
        )
        if not due:
            return counts
        hooks = {h["name"]: h for h in list_webhooks(warehouse)}
        claim = now + timedelta(minutes=10)  # a crashed attempt is tried again after this
        for row in due:
            warehouse.update_rows(
                "webhook_deliveries", "delivery_id", row["delivery_id"], {"next_attempt_at": claim}
            )
    own = client or httpx.Client()
    try:
        for row in due:
            outcome = _attempt(warehouse, row, hooks.get(row["webhook"]), own, now)
            counts[outcome] += 1
    finally:
        if client is None:
            own.close()
    return counts


def _attempt(
    warehouse: Warehouse,
    row: dict[str, Any],
    hook: Mapping[str, Any] | None,
    client: httpx.Client,
    now: datetime,
) -> str:
    key = row["delivery_id"]
    if hook is None:
        return _failed(warehouse, row, 10**6, "the webhook was removed", now)
    if row["customer_id"] is not None:
        with warehouse.lock:
            verdict = may_contact(warehouse, row["customer_id"], hook["purpose"])
        if not verdict.allowed:
            with warehouse.lock:
                _set(warehouse, key, {"status": "denied", "last_error": verdict.reason})
            return "denied"
    with warehouse.lock:
        body, secret = _body(warehouse, row), _secret(warehouse, hook["name"])
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: key,
        SIGNATURE_HEADER: sign(secret or "", body, int(time.time())),
        "User-Agent": "Touchpoints-Webhooks/1",
    }
    try:
        answer = client.post(
            hook["url"], content=body, headers=headers, timeout=hook["timeout_seconds"]
        )
        error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    if error is None:
        with warehouse.lock:
            _set(
                warehouse,
                key,
                {
                    "status": "delivered",
                    "attempts": row["attempts"] + 1,
                    "delivered_at": now,
                    "last_error": None,
                    "next_attempt_at": None,
                },
            )
        return "delivered"
    return _failed(warehouse, row, hook["max_attempts"], error, now, hook)


def _failed(
    warehouse: Warehouse,
    row: dict[str, Any],
    max_attempts: int,
    error: str,
    now: datetime,
    hook: Mapping[str, Any] | None = None,
) -> str:
    """Schedule the next attempt (base × 2^(attempts−1), capped; no jitter, so that the
    schedule is predictable), or give up into the dead letters."""
    attempts = row["attempts"] + 1
    key = row["delivery_id"]
    with warehouse.lock:
        if hook is None or attempts >= max_attempts:
            _set(
                warehouse,
                key,
                {
                    "status": "dead",
                    "attempts": attempts,
                    "last_error": error,
                    "next_attempt_at": None,
                },
            )
            dead = {
                "delivery_id": key,
                "webhook": row["webhook"],
                "customer_id": row["customer_id"],
                "payload": row["payload"],
                "attempts": attempts,
                "last_error": error,
                "failed_at": now,
                "replayed_at": None,
            }
            warehouse.delete_where("webhook_dead_letters", lambda t: t.delivery_id == key)
            warehouse.insert("webhook_dead_letters", pa.Table.from_pylist([dead], schema=_DEAD))
            return "dead"
        wait = min(hook["backoff_seconds"] * 2 ** (attempts - 1), hook["max_backoff_seconds"])
        _set(
            warehouse,
            key,
            {
                "attempts": attempts,
                "last_error": error,
                "next_attempt_at": now + timedelta(seconds=wait),
            },
        )
    return "retrying"


def replay(
    warehouse: Warehouse, delivery_ids: Sequence[str] | None = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """Queue dead letters again (all not replayed yet, or those named), attempts reset."""
    now = now or datetime.now(UTC)
    with warehouse.lock:
        dead = warehouse.table("webhook_dead_letters")
        chosen = dead.filter(dead.replayed_at.isnull())
        if delivery_ids is not None:
            chosen = chosen.filter(chosen.delivery_id.isin(list(delivery_ids)))
        ids = chosen.delivery_id.to_pyarrow().to_pylist()
        unknown = sorted(set(delivery_ids or []) - set(ids))
        if unknown:
            raise NotFound(
                f"no dead letter {unknown[0]!r} waiting for a replay", field="delivery_ids"
            )
        for key in ids:
            _set(warehouse, key, {"status": "pending", "attempts": 0, "next_attempt_at": now})
            warehouse.update_rows("webhook_dead_letters", "delivery_id", key, {"replayed_at": now})
    return {"replayed": len(ids), "delivery_ids": ids}


def deliveries(
    warehouse: Warehouse, *, webhook: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest deliveries (sizes of their payloads, never the payloads)."""
    if not 0 < limit <= 10_000:
        raise InvalidInput("limit is 1 to 10000", field="limit")
    rows = warehouse.table("webhook_deliveries")
    if webhook is not None:
        rows = rows.filter(rows.webhook == webhook)
    if status is not None:
        rows = rows.filter(rows.status == status)
    found = rows.order_by(ibis.desc("created_at")).limit(limit).to_pyarrow().to_pylist()
    return [_public(row) for row in found]


def dead_letters(warehouse: Warehouse, *, limit: int = 100) -> list[dict[str, Any]]:
    """The dead letters, latest first (no payloads)."""
    rows = warehouse.table("webhook_dead_letters")
    found = rows.order_by(ibis.desc("failed_at")).limit(limit).to_pyarrow().to_pylist()
    return [_public(row) for row in found]
