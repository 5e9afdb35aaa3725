"""The audit log: who did what to whose data, when and why (GDPR Art. 30).

One function writes it (`record`), for every layer and face: profile reads
(`profile.read`), exports (`privacy.export`), erasures (`privacy.erase`), consent
changes (`consent.set`) and key changes (`key.add`, `key.revoke`). The actor is the API
key id, `cli` for the command line (or the server's control token), or `server`.

The log is append-only: this module has no update or delete, and every write holds
`warehouse.lock`. It is itself exportable (`export_audit`, and
`GET /v1/admin/audit`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import ibis
import orjson
import pyarrow as pa

from touchpoints.errors import InvalidInput
from touchpoints.identity import profile
from touchpoints.identity.lookup import pseudonymous
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import AUDIT_LOG

__all__ = [
    "COLUMNS",
    "CONTROL_ACTOR",
    "audited_profile",
    "check_reason",
    "export_audit",
    "record",
]

#: The actor of the command line, local use and the server's control token.
CONTROL_ACTOR = "cli"
#: The columns of an exported entry, in order.
COLUMNS = ("audit_id", "at", "actor", "action", "subject", "reason", "details")
MAX_REASON = 500
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_\-]*)+$")
_ARROW = AUDIT_LOG.to_pyarrow()


def record(
    warehouse: Warehouse,
    actor: str,
    action: str,
    subject: str | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry (now, by `actor`) and return it as `export_audit` shows it."""
    if not isinstance(actor, str) or not actor or len(actor) > 100:
        raise InvalidInput("actor is a key id, `cli` or `server`", field="actor")
    if not isinstance(action, str) or not _ACTION.match(action) or len(action) > 60:
        raise InvalidInput(
            f"action is a dotted lower-case name (profile.read), not {str(action)[:40]!r}",
            field="action",
        )
    if subject is not None and (not isinstance(subject, str) or len(subject) > 512):
        raise InvalidInput("subject is an identifier or customer id", field="subject")
    # the log names people as the warehouse stores them: emails and phones as blinds
    subject = pseudonymous(warehouse, subject) if subject else subject
    for key in ("identifier", "subject"):  # as typed by whoever asked: maybe an email
        if details and isinstance(details.get(key), str):
            details = {**details, key: pseudonymous(warehouse, details[key])}
    row = {
        "audit_id": "aud_" + uuid.uuid4().hex,
        "at": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "subject": subject,
        "reason": check_reason(reason),
        "details": orjson.dumps(dict(details)).decode() if details else None,
    }
    with warehouse.lock:
        warehouse.insert("audit_log", pa.Table.from_pylist([row], schema=_ARROW))
    return _public(row)


def check_reason(reason: Any) -> str | None:
    """A caller's stated reason, trimmed; InvalidInput if it is not short plain text."""
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is text of at most {MAX_REASON} characters", field="reason")
    if any(ord(c) < 32 or ord(c) == 127 for c in reason):
        raise InvalidInput("reason holds control characters", field="reason")
    return reason.strip() or None


def audited_profile(
    warehouse: Warehouse,
    identifier: str,
    limit: int = 200,
    *,
    actor: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """A customer's profile (`touchpoints.identity.profile`), with a `profile.read` entry
    naming the customer; nothing is returned unless the entry was written."""
    reason = check_reason(reason)
    with warehouse.lock:
        found = profile(warehouse, identifier, limit)
        record(
            warehouse,
            actor,
            "profile.read",
            subject=found.get("customer_id") or identifier,
            reason=reason,
            details={"identifier": identifier, "limit": limit},
        )
    return found


def export_audit(
    warehouse: Warehouse,
    start: datetime | date | str | None = None,
    end: datetime | date | str | None = None,
    action: str | None = None,
    subject: str | None = None,
) -> list[dict[str, Any]]:
    """Entries with `start <= at < end`, oldest first, as dicts (`at` ISO-8601, `details`
    parsed). A date alone means its midnight UTC; as `end`, the whole day is included.
    `action` matches exactly, or a prefix ending in a dot (`privacy.`). `subject` (an
    identifier or customer id) matches entries about that person under any of their
    identifiers or their customer id."""
    low = _when(start, "from", end_of_day=False)
    high = _when(end, "to", end_of_day=True)
    if low is not None and high is not None and low > high:
        raise InvalidInput("from is after to", field="from")
    if action is not None and (not isinstance(action, str) or len(action) > 60):
        raise InvalidInput("action is an action name such as profile.read", field="action")
    with warehouse.lock:
        table = warehouse.table("audit_log")
        if low is not None:
            table = table.filter(table.at >= ibis.literal(low, type="timestamp('UTC')"))
        if high is not None:
            table = table.filter(table.at < ibis.literal(high, type="timestamp('UTC')"))
        if action:
            table = table.filter(
                table.action.startswith(action) if action.endswith(".") else table.action == action
            )
        if subject:
            table = table.filter(table.subject.isin(_names(warehouse, subject)))
        rows = table.order_by("at", "audit_id").to_pyarrow().to_pylist()
    return [_public(row) for row in rows]


def _names(warehouse: Warehouse, subject: str) -> list[str]:
    """`subject`, and if it belongs to a customer, their id and every identifier."""
    if not isinstance(subject, str) or len(subject) > 512:
        raise InvalidInput("subject is an identifier or customer id", field="subject")
    subject = pseudonymous(warehouse, subject)
    identities = warehouse.table("identities")
    owners = identities.filter(
        (identities.identifier == subject) | (identities.customer_id == subject)
    ).select(_owner=identities.customer_id)
    rows = (
        identities.semi_join(owners, identities.customer_id == owners["_owner"])
        .select("customer_id", "identifier")
        .to_pyarrow()
        .to_pylist()
    )
    return sorted({subject} | {r["customer_id"] for r in rows} | {r["identifier"] for r in rows})


def _when(value: Any, where: str, *, end_of_day: bool) -> datetime | None:
    """An aware UTC datetime from a datetime, a date or their ISO-8601 text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if "T" in text:  # a `+01:00` offset arrives as ` 01:00` in an unencoded query
            text = text.replace(" ", "+")
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{value[:40]!r} is not an ISO-8601 date or date-time", field=where
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(
                "the time has no time zone; give an offset (…Z or +01:00)", field=where
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        midnight = datetime.combine(value, time(), tzinfo=UTC)
        return midnight + timedelta(days=1) if end_of_day else midnight
    raise InvalidInput("must be a date or date-time", field=where)


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    at = row["at"]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    details = row["details"]
    try:
        parsed = orjson.loads(details) if details else None
    except orjson.JSONDecodeError:
        parsed = details
    return {
        "audit_id": row["audit_id"],
        "at": at.isoformat(),
        "actor": row["actor"],
        "action": row["action"],
        "subject": row["subject"],
        "reason": row["reason"],
        "details": parsed,
    }
