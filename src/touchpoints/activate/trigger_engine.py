"""Evaluating triggers as events arrive; all state in the warehouse, none in memory.

`tick` is called every second by the server (and by tests, with their own clock):

1. Events loaded since the last tick (by `received_at`, up to `lag_seconds` ago so that
   none still in flight in the writer is passed over; the cursor is in `meta`) are
   matched against the event triggers. A trigger without `unless` fires at once; one with
   `unless` writes a `trigger_pending` row due `within_minutes` after the event (a newer
   A restarts the wait), and a matching B event of the same person removes it.
2. Pending rows whose time has come fire — after one more look in `events` for a B in the
   window, which is the authority (a B may still have been in flight at step 1).
3. "Entered audience" and "churn risk crossed" triggers fire for the people their
   evaluation names.

A firing has a deterministic id (trigger, person, occasion), so a tick repeated after a
crash never fires twice, and the frequency cap counts the `trigger_fires` of the person
for the rule. Consent is asked by the action itself, at the moment of contact.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import orjson
import pyarrow as pa

from touchpoints.activate.trigger_actions import run_action
from touchpoints.activate.triggers import list_triggers, matches
from touchpoints.identity.attribution import with_customer
from touchpoints.identity.lookup import stored_config
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import TRIGGER_FIRES, TRIGGER_PENDING
from touchpoints.warehouse.writer import EventWriter

__all__ = ["fire", "tick"]

CURSOR_KEY = "trigger_cursor"
_PENDING_ARROW = TRIGGER_PENDING.to_pyarrow()
_FIRES_ARROW = TRIGGER_FIRES.to_pyarrow()
_TS = "timestamp('UTC')"


def tick(
    warehouse: Warehouse,
    *,
    writer: EventWriter,
    now: datetime | None = None,
    lag_seconds: float = 5.0,
    entered: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """One evaluation round (see the module docstring); `now` is the clock that delays
    and caps are measured by, `entered` the people each audience refresh found new."""
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    with warehouse.lock:
        triggers = [t for t in list_triggers(warehouse) if t.get("enabled", True)]
    by_event = [t for t in triggers if "event" in t["when"]]
    new = _new_events(warehouse, datetime.now(UTC) - timedelta(seconds=lag_seconds), by_event)
    counts["events"] = len(new)
    for row in new:
        properties = orjson.loads(row["properties"] or "{}")
        for trigger in by_event:
            if matches(trigger["when"], row["event"], properties):
                if trigger["unless"] is None:
                    key = f"event:{row['message_id']}"
                    counts[fire(warehouse, trigger, row["customer_id"], key, writer=writer,
                                now=now, context=_summary(row, properties))] += 1  # fmt: skip
                else:
                    _wait(warehouse, trigger, row)
                    counts["waiting"] += 1
            if trigger["unless"] is not None and matches(
                trigger["unless"], row["event"], properties
            ):
                counts["cancelled"] += _cancel(warehouse, trigger["name"], row)
    for trigger in by_event:
        if trigger["unless"] is not None:
            for outcome in _fire_due(warehouse, trigger, writer, now):
                counts[outcome] += 1
    for trigger in triggers:
        audience = trigger["when"].get("entered_audience")
        for customer in (entered or {}).get(audience, ()) if audience else ():
            key = f"entered:{audience}:{now.isoformat()}"
            counts[fire(warehouse, trigger, customer, key, writer=writer, now=now)] += 1
        if "churn_risk_above" in trigger["when"]:
            for customer, occasion in _churn_crossers(warehouse, trigger, now):
                counts[fire(warehouse, trigger, customer, occasion, writer=writer, now=now)] += 1
    return dict(counts)


def _new_events(
    warehouse: Warehouse, upper: datetime, wanted: Sequence[Any]
) -> list[dict[str, Any]]:
    """Events received after the cursor and up to `upper`, oldest first; moves the
    cursor. The first call only sets it: triggers act on what arrives from then on (and
    so does a trigger saved later). Nothing is read while no trigger wants events."""
    with warehouse.lock:
        stored = warehouse.get_meta(CURSOR_KEY)
        if not wanted:  # forget the cursor: a trigger saved later starts from its time
            if stored is not None:
                warehouse.delete_where("meta", lambda t: t.key == CURSOR_KEY)
            return []
        if stored is None:
            warehouse.set_meta(CURSOR_KEY, upper.isoformat())
            return []
        cursor = datetime.fromisoformat(stored)
        if upper <= cursor:
            return []
        events = warehouse.table("events")
        fresh = events.filter(
            (events.received_at > ibis.literal(cursor, type=_TS))
            & (events.received_at <= ibis.literal(upper, type=_TS))
            & (events.type == "track")
        )
        mapped = with_customer(fresh, warehouse.table("identities"), stored_config(warehouse))
        rows = (
            mapped.select(
                "message_id", "event", "user_id", "anonymous_id", "timestamp", "properties",
                "customer_id",
            )
            .order_by("timestamp", "message_id")
            .to_pyarrow()
            .to_pylist()
        )  # fmt: skip
        warehouse.set_meta(CURSOR_KEY, upper.isoformat())
    return rows


def _summary(row: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event": row["event"],
        "message_id": row["message_id"],
        "timestamp": row["timestamp"].isoformat(),
        "properties": dict(properties),
    }


def _same_person(table: Any, row: Mapping[str, Any]) -> Any:
    tests = [table.customer_id == row["customer_id"]]
    if row.get("user_id"):
        tests.append(table.user_id == row["user_id"])
    if row.get("anonymous_id"):
        tests.append(table.anonymous_id == row["anonymous_id"])
    return ibis.or_(*[ibis.coalesce(test, False) for test in tests])


def _wait(warehouse: Warehouse, trigger: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    """Start (or restart) the wait for the person's B."""
    due = row["timestamp"] + timedelta(minutes=trigger["unless"]["within_minutes"])
    name = trigger["name"]
    with warehouse.lock:
        warehouse.delete_where(
            "trigger_pending", lambda t: (t.trigger == name) & (t.customer_id == row["customer_id"])
        )
        pending = {
            "trigger": name,
            "customer_id": row["customer_id"],
            "user_id": row["user_id"],
            "anonymous_id": row["anonymous_id"],
            "started_at": row["timestamp"],
            "due_at": due,
            "message_id": row["message_id"],
        }
        warehouse.insert("trigger_pending", pa.Table.from_pylist([pending], _PENDING_ARROW))


def _cancel(warehouse: Warehouse, name: str, row: Mapping[str, Any]) -> int:
    """The person did B: their waits that started before it end without firing."""
    at = ibis.literal(row["timestamp"], type=_TS)
    with warehouse.lock:
        return warehouse.delete_where(
            "trigger_pending",
            lambda t: (t.trigger == name) & (t.started_at <= at) & _same_person(t, row),
        )


def _fire_due(
    warehouse: Warehouse, trigger: Mapping[str, Any], writer: EventWriter, now: datetime
) -> list[str]:
    name, unless = trigger["name"], trigger["unless"]
    with warehouse.lock:
        pending = warehouse.table("trigger_pending")
        due = (
            pending.filter((pending.trigger == name) & (pending.due_at <= ibis.literal(now, _TS)))
            .to_pyarrow()
            .to_pylist()
        )
    outcomes = []
    for row in due:
        with warehouse.lock:
            done_b = _did_b(warehouse, unless, row)
            warehouse.delete_where(
                "trigger_pending",
                lambda t, r=row: (t.trigger == name) & (t.customer_id == r["customer_id"]),
            )
        if done_b:
            outcomes.append("cancelled")
            continue
        context = {"waited_for": unless["event"], "since": row["started_at"].isoformat()}
        key = f"pending:{row['message_id']}"
        outcomes.append(
            fire(
                warehouse, trigger, row["customer_id"], key, writer=writer, now=now, context=context
            )
        )
    return outcomes


def _did_b(warehouse: Warehouse, unless: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """Did the person do B between A and the due time? (the events table decides)"""
    events = warehouse.table("events")
    window = events.filter(
        (events.event == unless["event"])
        & (events.timestamp >= ibis.literal(row["started_at"], _TS))
        & (events.timestamp <= ibis.literal(row["due_at"], _TS))
    )
    mapped = with_customer(window, warehouse.table("identities"), stored_config(warehouse))
    found = mapped.filter(_same_person(mapped, row)).select("event", "properties")
    for hit in found.to_pyarrow().to_pylist():
        if matches(unless, hit["event"], orjson.loads(hit["properties"] or "{}")):
            return True
    return False


def _churn_crossers(
    warehouse: Warehouse, trigger: Mapping[str, Any], now: datetime
) -> list[tuple[str, str]]:
    """People whose churn risk is above the threshold now and was not at the trigger's
    last evaluation (every `every_minutes`; the state is in `meta`)."""
    when, key = trigger["when"], f"trigger_state:{trigger['name']}"
    with warehouse.lock:
        stored = warehouse.get_meta(key)
    state = orjson.loads(stored) if stored else {}
    last = datetime.fromisoformat(state["at"]) if state.get("at") else None
    if last is not None and now < last + timedelta(minutes=when["every_minutes"]):
        return []
    from touchpoints.models.churn_service import current_risk

    with warehouse.lock:
        scores = current_risk(warehouse, timedelta(days=when["horizon_days"]))
    ids = scores["customer_id"] if "customer_id" in scores.columns else scores.index.to_series()
    above = set(ids[scores["risk"] > when["churn_risk_above"]].astype(str))
    before = set(state.get("above", []))
    with warehouse.lock:
        warehouse.set_meta(
            key, orjson.dumps({"at": now.isoformat(), "above": sorted(above)}).decode()
        )
    return [(c, f"churn:{now.isoformat()}") for c in sorted(above - before)]


def fire(
    warehouse: Warehouse,
    trigger: Mapping[str, Any],
    customer_id: str,
    occasion: str,
    *,
    writer: EventWriter,
    now: datetime,
    context: Mapping[str, Any] | None = None,
) -> str:
    """Fire `trigger` for a person once for this `occasion`, within the cap; returns the
    outcome (`done`, `capped`, `denied`, `skipped`, `failed`, or `repeat`)."""
    name = trigger["name"]
    fire_id = (
        "fir_" + hashlib.sha256(f"{name}\x1f{customer_id}\x1f{occasion}".encode()).hexdigest()[:24]
    )
    with warehouse.lock:
        fires = warehouse.table("trigger_fires")
        if fires.filter(fires.fire_id == fire_id).count().to_pyarrow().as_py():
            return "repeat"
        since = ibis.literal(now - timedelta(hours=trigger["cap_hours"]), _TS)
        recent = fires.filter(
            (fires.trigger == name)
            & (fires.customer_id == customer_id)
            & (fires.fired_at > since)
            & fires.status.isin(["done", "firing"])
        )
        capped = trigger["cap_hours"] > 0 and recent.count().to_pyarrow().as_py() > 0
        row = {
            "fire_id": fire_id,
            "trigger": name,
            "customer_id": customer_id,
            "fired_at": now,
            "status": "capped" if capped else "firing",
            "reason": f"fired within the last {trigger['cap_hours']} hours" if capped else None,
        }
        warehouse.insert("trigger_fires", pa.Table.from_pylist([row], _FIRES_ARROW))
    if capped:
        return "capped"
    status, reason = run_action(
        warehouse, trigger, customer_id, fire_id, writer=writer, now=now, context=context or {}
    )
    with warehouse.lock:
        warehouse.update_rows(
            "trigger_fires", "fire_id", fire_id, {"status": status, "reason": reason}
        )
    return status
