"""The collector's way into the consent history: decisions carried by events.

`sync_consents` reads `Consent Updated` events and `context.consent` (shape:
`touchpoints.collect.consent`) received since its last run (a watermark in `meta`,
re-reading a few minutes back for events loaded late) and appends their records
idempotently (id from source id + message id + purpose). A consent event always
records; `context.consent` on other events records only a change from the previous
record of that identifier and purpose, so a banner that adds it to every call does not
grow the history with every page view. Every read (`consent_read`) syncs first, and
`touchpoints build` runs it after identities.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import ibis
import orjson

from touchpoints.collect.consent import CONSENT_EVENTS, is_consent_event, read_choices
from touchpoints.privacy.consent_config import ConsentConfig, load_config
from touchpoints.privacy.consent_records import make_consent_id, store, utc
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text

__all__ = ["sync_consents"]

WATERMARK = "consent_watermark"
#: How far before the watermark each sync looks again, for events loaded late.
LOOKBACK = timedelta(minutes=5)


def sync_consents(warehouse: Warehouse) -> int:
    """Append the decisions carried by events received since the last sync (see the
    module docstring); returns how many records were new. Safe to run any time."""
    config = load_config(warehouse)
    with warehouse.lock:
        events = warehouse.table("events")
        watermark = warehouse.get_meta(WATERMARK)
        carrying = (events.type == "track") & events.event.isin(list(CONSENT_EVENTS))
        carrying |= json_text(events.context, "consent").notnull()
        wanted = events.filter(carrying)
        if watermark is not None:
            since = datetime.fromisoformat(watermark) - LOOKBACK
            wanted = wanted.filter(wanted.received_at > since)
        found = wanted.select(
            "source_id",
            "message_id",
            "type",
            "event",
            "user_id",
            "anonymous_id",
            "timestamp",
            "received_at",
            "properties",
            "context",
        ).to_pyarrow()
        if found.num_rows == 0:
            return 0
        high = max(found.column("received_at").to_pylist())
        candidates, extra = _from_events(found.to_pylist(), config)
        fresh = _changes(warehouse, candidates)
        stored = store(warehouse, fresh, actor="collector", reason=None, extra=extra)
        if watermark is None or high > datetime.fromisoformat(watermark):
            warehouse.set_meta(WATERMARK, utc(high).isoformat())
    return len(stored)


def _from_events(
    events: list[dict[str, Any]], config: ConsentConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Candidate records from event rows, with what the audit should say of each."""
    rows: list[dict[str, Any]] = []
    extra: dict[str, dict[str, Any]] = {}
    for event in events:
        user = (event["user_id"] or "").strip()
        anonymous = (event["anonymous_id"] or "").strip()
        if not user and not anonymous:
            continue  # pseudonymised without a cookie id: nobody to attach it to
        subject = f"user_id:{user}" if user else f"anonymous_id:{anonymous}"
        context = _json(event["context"])
        choices, version = read_choices(context.get("consent"))
        explicit = is_consent_event(event)
        if explicit:
            own, own_version = read_choices(_json(event["properties"]))
            choices.update(own)
            version = own_version or version
        received = utc(event["received_at"])
        recorded = min(utc(event["timestamp"]), received)
        for purpose, status in choices.items():
            if purpose not in config.purposes:
                continue  # banner categories that are no purpose (necessary, …)
            consent_id = make_consent_id("event", event["source_id"], event["message_id"], purpose)
            rows.append(
                {
                    "consent_id": consent_id,
                    "subject": subject,
                    "purpose": purpose,
                    "status": status,
                    "source": "collector",
                    "policy_version": version[:100] if version else None,
                    "recorded_at": recorded,
                    "received_at": received,
                    "_explicit": explicit,
                }
            )
            extra[consent_id] = {
                "source_id": event["source_id"],
                "message_id": event["message_id"],
                "event": event["event"],
            }
    return rows, extra


def _changes(warehouse: Warehouse, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates to store: consent events always; `context.consent` only where it
    differs from the record before it for that identifier and purpose."""
    if not candidates:
        return []
    subjects = sorted({row["subject"] for row in candidates})
    table = warehouse.table("consents")
    wanted = ibis.memtable({"_s": subjects}, schema={"_s": "string"})
    stored = (
        table.semi_join(wanted, table.subject == wanted["_s"])
        .select("consent_id", "subject", "purpose", "status", "recorded_at", "received_at")
        .to_pyarrow()
        .to_pylist()
    )
    known = {row["consent_id"] for row in stored}
    timeline = [{**row, "_stored": True} for row in stored]
    timeline += [row for row in candidates if row["consent_id"] not in known]
    timeline.sort(
        key=lambda r: (
            r["subject"],
            r["purpose"],
            utc(r["recorded_at"]),
            utc(r["received_at"]),
            r["consent_id"],
        )
    )
    keep: list[dict[str, Any]] = []
    previous: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    for row in timeline:
        key = (row["subject"], row["purpose"])
        if row.get("_stored"):
            previous[key] = row["status"]
            continue
        if row["consent_id"] in seen:
            continue
        seen.add(row["consent_id"])
        if row["_explicit"] or previous.get(key) != row["status"]:
            keep.append({k: v for k, v in row.items() if not k.startswith("_")})
            previous[key] = row["status"]
    return keep


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
