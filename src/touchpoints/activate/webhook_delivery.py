"""Webhook deliveries: queued, attempted with exponential backoff, and given up into
the dead-letter table after the last failure (`webhook_records` replays them).

A delivery that carries a person's data (`customer_id` given) asks the privacy layer
(`activate.gate.may_contact`) when it is queued and again right before every attempt: a
person whose latest consent for the webhook's purpose does not allow it at that moment
is never sent, and the delivery is `denied` with the reason. A refused delivery keeps no
payload (what may not be used is not kept); an allowed one keeps it sealed with the
warehouse key until it is delivered or erased with the person.

`now` only drives the schedule (tests move it forward instead of sleeping); consent is
always asked as it stands, and the signature's timestamp is the wall clock, since
receivers compare it with theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import ibis
import orjson
import pyarrow as pa

import touchpoints
from touchpoints.activate.gate import may_contact
from touchpoints.activate.webhook_endpoints import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TABLE,
    endpoint,
    sign,
    signing_secret,
)
from touchpoints.errors import InvalidInput, NotFound, PayloadTooLarge
from touchpoints.privacy import audit
from touchpoints.privacy.consent_records import aware
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import WEBHOOK_DEAD_LETTERS, WEBHOOK_DELIVERIES
from touchpoints.warehouse.vault import TOKEN

__all__ = [
    "STATUSES",
    "backoff",
    "delete_webhook",
    "deliver_due",
    "enqueue",
    "give_up_pending",
    "view",
]

DELIVERIES, DEAD = "webhook_deliveries", "webhook_dead_letters"
STATUSES = ("pending", "delivered", "dead", "denied")
OUTCOMES = ("delivered", "retrying", "dead", "denied")
PAYLOAD_FIELD = "payload"
MAX_PAYLOAD = 256 * 1024
MAX_ERROR = 300
MAX_LIST = 1000
#: How long a claimed attempt is held, beyond its timeout, before another caller may
#: take it (a process that died mid-attempt): at least once, never twice at a time.
LEASE = timedelta(seconds=60)
_ROWS = WEBHOOK_DELIVERIES.to_pyarrow()
_DEAD_ROWS = WEBHOOK_DEAD_LETTERS.to_pyarrow()


def clock(now: datetime | None) -> datetime:
    """`now` as an aware UTC time (the clock when None); InvalidInput naming `now`."""
    return datetime.now(UTC) if now is None else aware(now, "now")


def _arrow(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _literal_time(when: datetime) -> Any:
    return ibis.literal(when, type="timestamp('UTC')")


# -- queuing -------------------------------------------------------------------
def enqueue(
    warehouse: Warehouse,
    webhook: str,
    payload: Mapping[str, Any],
    *,
    customer_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Queue one call of `webhook` with `payload` (a JSON object) as its body, due at
    `now`. With `customer_id` the payload is that person's data: sent only while their
    consent for the webhook's purpose allows it, else stored `denied` and never sent."""
    when = clock(now)
    if not isinstance(payload, Mapping):
        raise InvalidInput("the payload is a JSON object", field="payload")
    try:
        text = orjson.dumps(payload).decode()
    except TypeError as exc:
        raise InvalidInput(f"the payload is not JSON: {exc}", field="payload") from None
    if len(text.encode()) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"the payload is over {MAX_PAYLOAD} bytes", field="payload")
    if customer_id is not None and (
        not isinstance(customer_id, str) or not customer_id.strip() or len(customer_id) > 200
    ):
        raise InvalidInput(
            "customer_id is a customer id of 1 to 200 characters", field="customer_id"
        )
    with warehouse.lock:
        purpose = endpoint(warehouse, webhook)["purpose"]
        row: dict[str, Any] = {
            "delivery_id": "whd_" + uuid.uuid4().hex,
            "webhook": webhook,
            "customer_id": customer_id,
            "payload": text,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": when,
            "last_error": None,
            "created_at": when,
            "delivered_at": None,
        }
        if customer_id is not None:
            verdict = may_contact(warehouse, customer_id, purpose)
            if verdict.allowed:
                vault = warehouse.vault
                row["payload"] = vault.seal(PAYLOAD_FIELD, text, vault.blind(PAYLOAD_FIELD, text))
            else:
                row.update(status="denied", payload="", next_attempt_at=None)
                row["last_error"] = verdict.reason
        warehouse.insert(DELIVERIES, _arrow(_ROWS, [row]))
    return view(row)


# -- attempting ----------------------------------------------------------------
def deliver_due(
    warehouse: Warehouse,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    limit: int = 100,
    delivery_ids: Sequence[str] | None = None,
) -> dict[str, int]:
    """Attempt every pending delivery due by `now` (at most `limit`, oldest first), or
    only those of `delivery_ids`; returns how many were delivered, will be retried, went
    dead and were denied. One cheap query when nothing is due. Each delivery is claimed
    under the warehouse lock and posted outside it, so overlapping calls never send the
    same delivery twice at once."""
    when, most = clock(now), check_limit(limit)
    with warehouse.lock:  # the Ibis connection is one per process: every query under it
        table = warehouse.table(DELIVERIES)
        due = table.filter(
            (table.status == "pending") & (table.next_attempt_at <= _literal_time(when))
        )
        if delivery_ids is not None:
            due = due.filter(due.delivery_id.isin(list(delivery_ids)))
        ids = due.order_by("next_attempt_at").limit(most).delivery_id.to_pyarrow().to_pylist()
    counts = dict.fromkeys(OUTCOMES, 0)
    if not ids:
        return counts
    http = client if client is not None else httpx.Client(follow_redirects=False)
    try:
        for delivery_id in ids:
            outcome = _attempt(warehouse, http, delivery_id, when)
            if outcome is not None:
                counts[outcome] += 1
    finally:
        if client is None:
            http.close()
    return counts


def _attempt(
    warehouse: Warehouse, http: httpx.Client, delivery_id: str, when: datetime
) -> str | None:
    """Claim, check consent, post, record: the outcome, or None if another caller has it."""
    with warehouse.lock:
        row = _pending(warehouse, delivery_id, when)
        if row is None:
            return None
        try:
            definition = endpoint(warehouse, row["webhook"])
            secret = signing_secret(warehouse, row["webhook"])
        except NotFound:
            _give_up(warehouse, row, row["attempts"], "the webhook was deleted", when)
            return "dead"
        if row["customer_id"] is not None:
            verdict = may_contact(warehouse, row["customer_id"], definition["purpose"])
            if not verdict.allowed:
                update_delivery(
                    warehouse,
                    delivery_id,
                    status="denied",
                    payload="",
                    next_attempt_at=None,
                    last_error=verdict.reason,
                )
                return "denied"
        attempts = row["attempts"] + 1
        timeout = float(definition["timeout_seconds"])
        lease = when + timedelta(seconds=timeout) + LEASE
        update_delivery(warehouse, delivery_id, attempts=attempts, next_attempt_at=lease)
        body = _body(warehouse, row).encode()
    error = _post(http, definition["url"], delivery_id, body, secret, timeout)
    with warehouse.lock:
        current = read_row(warehouse, DELIVERIES, delivery_id)
        if current is None or current["status"] != "pending":
            return None  # erased, or given up, while the request was out
        if error is None:
            update_delivery(
                warehouse,
                delivery_id,
                status="delivered",
                next_attempt_at=None,
                last_error=None,
                delivered_at=when,
            )
            return "delivered"
        if attempts >= int(definition["max_attempts"]):
            _give_up(warehouse, current, attempts, error, when)
            return "dead"
        wait = backoff(attempts, definition["backoff_seconds"], definition["max_backoff_seconds"])
        update_delivery(warehouse, delivery_id, next_attempt_at=when + wait, last_error=error)
        return "retrying"


def backoff(attempts: int, base: float, most: float) -> timedelta:
    """The wait after failed attempt number `attempts`: base · 2^(attempts-1), at most
    `most`. No jitter: the schedule is exact and testable; deliveries to one endpoint are
    spread by when each was queued, and each is posted one after another anyway."""
    return timedelta(seconds=min(float(base) * 2 ** (attempts - 1), float(most)))


def _post(
    http: httpx.Client, url: str, delivery_id: str, body: bytes, secret: str, timeout: float
) -> str | None:
    """POST one signed body; None on a 2xx answer, else why it failed, in words."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Touchpoints-Webhooks/{touchpoints.__version__}",
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(secret, body),
    }
    try:
        response = http.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return f"timed out after {timeout:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return f"request failed: {type(exc).__name__}: {exc}"[:MAX_ERROR]
    if 200 <= response.status_code < 300:
        return None
    said = " ".join(response.text.split())[:200]
    return f"HTTP {response.status_code}" + (f": {said}" if said else "")


def _pending(warehouse: Warehouse, delivery_id: str, when: datetime) -> dict[str, Any] | None:
    row = read_row(warehouse, DELIVERIES, delivery_id)
    if row is None or row["status"] != "pending" or row["next_attempt_at"] > when:
        return None
    return row


def read_row(warehouse: Warehouse, name: str, delivery_id: str) -> dict[str, Any] | None:
    """The stored row of a delivery in table `name` (deliveries or dead letters)."""
    table = warehouse.table(name)
    found = table.filter(table.delivery_id == delivery_id).to_pyarrow().to_pylist()
    return utc_times(found[0]) if found else None


def utc_times(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its times in UTC (Spark hands back timestamps without a zone)."""
    return {
        key: value.replace(tzinfo=UTC)
        if isinstance(value, datetime) and value.tzinfo is None
        else value
        for key, value in row.items()
    }


def update_delivery(warehouse: Warehouse, delivery_id: str, **values: Any) -> None:
    """Set columns of one delivery (the caller holds the warehouse lock)."""
    warehouse.update_rows(DELIVERIES, "delivery_id", delivery_id, values)


def _body(warehouse: Warehouse, row: Mapping[str, Any]) -> str:
    text = row["payload"]
    return str(warehouse.vault.open(PAYLOAD_FIELD, text)) if TOKEN.match(text) else text


def _give_up(
    warehouse: Warehouse, row: Mapping[str, Any], attempts: int, error: str, when: datetime
) -> None:
    """Mark a delivery dead and keep it as a dead letter (replacing an earlier one of the
    same delivery, replayed and failed again)."""
    update_delivery(
        warehouse,
        row["delivery_id"],
        status="dead",
        attempts=attempts,
        next_attempt_at=None,
        last_error=error,
    )
    letter = {
        "delivery_id": row["delivery_id"],
        "webhook": row["webhook"],
        "customer_id": row["customer_id"],
        "payload": row["payload"],
        "attempts": attempts,
        "last_error": error,
        "failed_at": when,
        "replayed_at": None,
    }
    warehouse.delete_where(DEAD, lambda t: t.delivery_id == row["delivery_id"])
    warehouse.insert(DEAD, _arrow(_DEAD_ROWS, [letter]))


def give_up_pending(
    warehouse: Warehouse, webhook: str, reason: str, now: datetime | None = None
) -> int:
    """Give up every pending delivery of `webhook` (into dead letters); how many."""
    when = clock(now)
    with warehouse.lock:
        table = warehouse.table(DELIVERIES)
        rows = table.filter((table.webhook == webhook) & (table.status == "pending"))
        found = rows.to_pyarrow().to_pylist()
        for row in found:
            _give_up(warehouse, row, row["attempts"], reason, when)
    return len(found)


def delete_webhook(warehouse: Warehouse, name: str, *, actor: str = "server") -> dict[str, Any]:
    """Remove webhook `name`. Its pending deliveries are given up (dead, with a dead
    letter each), so they can be replayed if it is made again under the same name."""
    with warehouse.lock:
        endpoint(warehouse, name)
        given_up = give_up_pending(warehouse, name, "the webhook was deleted")
        warehouse.delete_where(TABLE, lambda t: t.name == name)
        audit.record(
            warehouse, actor, "webhook.delete", None, None, {"name": name, "given_up": given_up}
        )
    return {"deleted": name, "pending_given_up": given_up}


def check_limit(limit: Any) -> int:
    """How many rows to list or attempt: 1 to MAX_LIST, else InvalidInput naming it."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit is a whole number from 1 to {MAX_LIST}", field="limit")
    return limit


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as shown: the payload in clear only when it carries no one's data."""
    shown = {k: v for k, v in utc_times(row).items() if k != "payload"}
    text = row["payload"]
    match = TOKEN.match(text)
    if match is not None:  # AES-GCM: the sealed bytes are the plain ones, a nonce and a tag
        shown["payload_bytes"] = len(match.group(3)) * 3 // 4 - 28
    else:
        shown["payload_bytes"] = len(text.encode())
    shown["personal"] = row["customer_id"] is not None
    if not shown["personal"]:
        shown["payload"] = orjson.loads(text)
    return shown
