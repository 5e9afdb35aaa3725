"""The consent history: checking and appending a person's decisions.

The history (`consents`) holds one row per decision of a person for a purpose: the
identifier it came with (`kind:value`, normalised as identity resolution does), the
purpose, `granted` / `denied` / `withdrawn`, where it came from, the policy version and
when the person decided (`recorded_at`). Rows are only ever appended; every appended row
also writes an `audit_log` row (action `consent.set`).

Ways in here: `record` (the API), `import_consents` (rows from a file), `withdraw`
(unsubscribe links; activation calls it). The collector's way in, `consent_sync`, stores
through `store` as well, so every path writes the same rows and audit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import orjson
import pyarrow as pa

from touchpoints.collect.consent import STATUSES, choice
from touchpoints.errors import InvalidInput
from touchpoints.privacy.consent_config import load_config
from touchpoints.privacy.consent_subjects import normalise_subjects
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import AUDIT_LOG, CONSENTS

__all__ = ["import_consents", "record", "store", "withdraw"]

#: How far ahead of now a decision's time may be (clocks differ a little).
MAX_SKEW = timedelta(minutes=5)
ACTION = "consent.set"

_CONSENTS_ARROW = CONSENTS.to_pyarrow()
_AUDIT_ARROW = AUDIT_LOG.to_pyarrow()


def record(
    warehouse: Warehouse,
    subject: str,
    purposes: Mapping[str, Any],
    *,
    source: str = "api",
    policy_version: str | None = None,
    recorded_at: datetime | str | None = None,
    actor: str = "server",
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """Append a person's decisions (purpose → `granted`/`denied`/`withdrawn`, or true /
    false); returns the rows stored. Nothing is stored unless all of it is valid."""
    if not isinstance(purposes, Mapping) or not purposes:
        raise InvalidInput("purposes maps each purpose to its status", field="purposes")
    rows = [
        {
            "subject": subject,
            "purpose": purpose,
            "status": status,
            "source": source,
            "policy_version": policy_version,
            "recorded_at": recorded_at,
        }
        for purpose, status in purposes.items()
    ]
    return _append(warehouse, rows, actor=actor, reason=reason, now_default=True, where="")


def withdraw(
    warehouse: Warehouse,
    identifier: str,
    purpose: str,
    source: str = "unsubscribe",
    *,
    actor: str = "server",
    reason: str | None = None,
) -> dict[str, Any]:
    """Record that a person withdrew consent for `purpose` now (an unsubscribe link)."""
    load_config(warehouse).check_purpose(purpose)
    rows = record(
        warehouse,
        identifier,
        {purpose: "withdrawn"},
        source=source,
        actor=actor,
        reason=reason,
    )
    return rows[0]


def import_consents(
    warehouse: Warehouse,
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str = "import",
    actor: str = "import",
) -> int:
    """Append decisions from rows with `subject` (or `identifier`), `purpose`, `status`,
    `recorded_at` (aware datetime or ISO-8601 with offset) and optionally
    `policy_version` and `source`. All rows are checked before any is stored; a row
    imported before is skipped. Returns how many rows were new."""
    prepared = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput("each row is a mapping of column to value", field=f"rows[{index}]")
        prepared.append(
            {
                "subject": row.get("subject", row.get("identifier")),
                "purpose": row.get("purpose"),
                "status": row.get("status"),
                "source": row.get("source") or source,
                "policy_version": row.get("policy_version"),
                "recorded_at": row.get("recorded_at"),
            }
        )
    stored = _append(warehouse, prepared, actor=actor, reason=None, now_default=False, where="rows")
    return len(stored)


def _append(
    warehouse: Warehouse,
    rows: Sequence[Mapping[str, Any]],
    *,
    actor: str,
    reason: str | None,
    now_default: bool,
    where: str,
) -> list[dict[str, Any]]:
    """Check every row, normalise its subject, then store the new ones (all under the
    warehouse lock: one thread at a time uses the connection)."""
    with warehouse.lock:
        checked = _checked(warehouse, rows, now_default, where)
        return store(warehouse, checked, actor=actor, reason=reason)


def _checked(
    warehouse: Warehouse, rows: Sequence[Mapping[str, Any]], now_default: bool, where: str
) -> list[dict[str, Any]]:
    """The rows validated, subjects normalised, each with its consent id (InvalidInput
    naming the first bad field). Runs under the warehouse lock."""
    config = load_config(warehouse)
    now = datetime.now(UTC)
    checked = []
    for index, row in enumerate(rows):
        prefix = f"{where}[{index}]." if where else ""
        purpose_field = f"{prefix}purpose" if where else f"purposes.{row.get('purpose')}"
        status_field = f"{prefix}status" if where else purpose_field
        purpose = config.check_purpose(row.get("purpose"), purpose_field)
        status = choice(row.get("status"))
        if status is None:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}, not {str(row.get('status'))[:40]!r}",
                field=status_field,
            )
        recorded = row.get("recorded_at")
        if recorded is None and not now_default:
            raise InvalidInput("recorded_at is required", field=f"{prefix}recorded_at")
        recorded_at = now if recorded is None else aware(recorded, f"{prefix}recorded_at")
        if recorded_at > now + MAX_SKEW:
            raise InvalidInput("recorded_at is in the future", field=f"{prefix}recorded_at")
        checked.append(
            {
                "subject": _subject_text(row.get("subject"), f"{prefix}subject"),
                "purpose": purpose,
                "status": status,
                "source": _short_text(row.get("source"), f"{prefix}source", required=True),
                "policy_version": _short_text(
                    row.get("policy_version"), f"{prefix}policy_version", required=False
                ),
                "recorded_at": recorded_at,
                "received_at": now,
            }
        )
    fields = [f"{where}[{i}].subject" if where else "subject" for i in range(len(checked))]
    subjects = normalise_subjects(warehouse, [r["subject"] for r in checked], fields)
    for row, subject in zip(checked, subjects, strict=True):
        row["subject"] = subject
        row["consent_id"] = make_consent_id(
            "record",
            row["source"],
            subject,
            row["purpose"],
            row["status"],
            row["recorded_at"].isoformat(),
            row["policy_version"] or "",
        )
    return checked


def store(
    warehouse: Warehouse,
    rows: list[dict[str, Any]],
    *,
    actor: str,
    reason: str | None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Append the consent rows whose id is new, and an audit row for each."""
    unique = {row["consent_id"]: row for row in rows}
    with warehouse.lock:
        if unique:
            table = warehouse.table("consents")
            ids = ibis.memtable({"_id": list(unique)}, schema={"_id": "string"})
            existing = (
                table.semi_join(ids, table.consent_id == ids["_id"])
                .select("consent_id")
                .to_pyarrow()
                .column("consent_id")
                .to_pylist()
            )
            for consent_id in existing:
                unique.pop(consent_id, None)
        fresh = list(unique.values())
        if not fresh:
            return []
        warehouse.insert("consents", pa.Table.from_pylist(fresh, schema=_CONSENTS_ARROW))
        audit = [
            {
                "audit_id": "aud_" + hashlib.sha256(row["consent_id"].encode()).hexdigest()[:24],
                "at": row["received_at"],
                "actor": actor,
                "action": ACTION,
                "subject": row["subject"],
                "reason": reason,
                "details": orjson.dumps(
                    {
                        "consent_id": row["consent_id"],
                        "purpose": row["purpose"],
                        "status": row["status"],
                        "source": row["source"],
                        "policy_version": row["policy_version"],
                        "recorded_at": row["recorded_at"].isoformat(),
                        **((extra or {}).get(row["consent_id"]) or {}),
                    }
                ).decode(),
            }
            for row in fresh
        ]
        warehouse.insert("audit_log", pa.Table.from_pylist(audit, schema=_AUDIT_ARROW))
    return [
        public_row(row) for row in sorted(fresh, key=lambda r: (r["recorded_at"], r["purpose"]))
    ]


# -- small helpers (consent_sync and consent_read use them too) ----------------------


def make_consent_id(*parts: str) -> str:
    return "con_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:28]


def _subject_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidInput("subject is an identifier as kind:value", field=where)
    if any(ord(c) < 32 for c in value):
        raise InvalidInput("subject holds control characters", field=where)
    return value


def _short_text(value: Any, where: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise InvalidInput("must be text of 1 to 100 characters", field=where)
    return value.strip()


def aware(value: Any, where: str) -> datetime:
    """An aware datetime in UTC from a datetime or an ISO-8601 text with an offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"{value[:40]!r} is not an ISO-8601 date-time", field=where
            ) from None
    if not isinstance(value, datetime):
        raise InvalidInput("must be a date-time", field=where)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("the time has no time zone; give an offset (…Z or +01:00)", field=where)
    if not 1970 <= value.year <= 9000:
        raise InvalidInput("date-time out of range (1970 to 9000)", field=where)
    return value.astimezone(UTC)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def public_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "consent_id": row["consent_id"],
        "subject": row["subject"],
        "purpose": row["purpose"],
        "status": row["status"],
        "source": row["source"],
        "policy_version": row["policy_version"],
        "recorded_at": utc(row["recorded_at"]).isoformat(),
        "received_at": utc(row["received_at"]).isoformat(),
    }
