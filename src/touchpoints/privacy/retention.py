"""Retention: how long each table, or each kind of event, is kept.

Settings live in `meta` (`retention_settings`) as JSON mapping a table, or
`events:<event>`, to a period: `{"events": "730d", "events:Page Viewed": "90d",
"rejected_events": "30d", "audit_log": "2190d"}`. Periods are a whole number of days
(`d`), weeks (`w`) or hours (`h`). An event rule matches a track event by its name, a page
view as `Page Viewed`, a screen view as `Screen Viewed`, and any event by its type
(`events:identify`); a matching event follows its rule, every other event the table's.
A table without a rule is kept for ever.

`enforce_retention` deletes the rows whose time (below, per table) is older than now
minus the period, and reports the count per rule; with `dry_run` it only counts. The
server runs it daily; each real run writes a `privacy.retention` audit entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import orjson

from touchpoints.errors import InvalidInput
from touchpoints.privacy.person import write_audit
from touchpoints.warehouse import Warehouse

SETTINGS_KEY = "retention_settings"
ACTION = "privacy.retention"
#: The time that ages each table's rows.
TIME_COLUMNS: dict[str, str] = {
    "events": "timestamp",
    "rejected_events": "received_at",
    "consents": "received_at",
    "audit_log": "at",
    "spend": "date",
    "segment_sizes": "computed_at",
    "identity_merges": "merged_at",
    "erasures": "erased_at",
}
_PERIOD = re.compile(r"^\s*(\d{1,6})\s*([dwh])\s*$")
_UNITS = {"d": "days", "w": "weeks", "h": "hours"}


def parse_period(text: Any, where: str = "period") -> timedelta:
    """`90d`, `12w`, `36h` as a duration."""
    found = _PERIOD.match(text) if isinstance(text, str) else None
    if found is None or int(found.group(1)) == 0:
        raise InvalidInput(
            f"a retention period is a number and d, w or h (90d), not {str(text)[:20]!r}",
            field=where,
        )
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def check_settings(settings: Any) -> dict[str, str]:
    """Valid settings, normalised; InvalidInput naming the first bad rule."""
    if not isinstance(settings, Mapping):
        raise InvalidInput(
            "retention settings map a table or events:NAME to a period", field="settings"
        )
    checked = {}
    for key, period in settings.items():
        table, _, event = str(key).partition(":")
        if table not in TIME_COLUMNS or (event and table != "events") or (":" in key and not event):
            raise InvalidInput(
                f"{str(key)[:60]!r} is not a table with a retention time "
                f"({', '.join(TIME_COLUMNS)}) or events:EVENT",
                field=f"settings.{str(key)[:60]}",
            )
        parse_period(period, f"settings.{key}")
        checked[str(key)] = period.strip()
    return checked


def load_settings(warehouse: Warehouse) -> dict[str, str]:
    stored = warehouse.get_meta(SETTINGS_KEY)
    return dict(orjson.loads(stored)) if stored else {}


def save_settings(
    warehouse: Warehouse, settings: Mapping[str, str], *, actor: str = "cli"
) -> dict[str, str]:
    """Replace the retention settings (and audit the change); returns them."""
    checked = check_settings(settings)
    with warehouse.lock:
        previous = load_settings(warehouse)
        warehouse.set_meta(SETTINGS_KEY, orjson.dumps(checked).decode())
        write_audit(
            warehouse,
            "privacy.retention_settings",
            actor=actor,
            subject=None,
            reason=None,
            details={"settings": checked, "previous": previous},
        )
    return checked


def event_label(events: ir.Table) -> ir.StringValue:
    """The name an `events:` rule matches: the track event's, or by type."""
    return ibis.cases(
        (events.type == "track", events.event),
        (events.type == "page", "Page Viewed"),
        (events.type == "screen", "Screen Viewed"),
        else_=events.type,
    )


def _rules(settings: Mapping[str, str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per table: its cut-off time, and the cut-off of each event rule."""
    tables: dict[str, dict[str, Any]] = {}
    for key, period in settings.items():
        table, _, event = key.partition(":")
        entry = tables.setdefault(table, {"cutoff": None, "events": {}})
        cutoff = now - parse_period(period, f"settings.{key}")
        if event:
            entry["events"][event] = cutoff
        else:
            entry["cutoff"] = cutoff
    return tables


def _expired(table: ir.Table, name: str, cutoff: datetime | None, events: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Predicates per rule key of the rows past their period."""
    column = table[TIME_COLUMNS[name]]

    def older(moment: datetime) -> ir.BooleanValue:
        if name == "spend":
            return column < ibis.literal(moment.date())
        return column < ibis.literal(moment, type="timestamp('UTC')")

    found: dict[str, ir.BooleanValue] = {}
    if name == "events" and events:
        label, kind = event_label(table), table.type
        matched = ibis.literal(False)
        for event, moment in events.items():
            hit = ibis.coalesce((label == event) | (kind == event), False)
            found[f"events:{event}"] = hit & older(moment)
            matched = matched | hit
        if cutoff is not None:
            found[name] = ~matched & older(cutoff)
    elif cutoff is not None:
        found[name] = older(cutoff)
    return found


def enforce_retention(
    warehouse: Warehouse,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    actor: str = "server",
) -> dict[str, Any]:
    """Delete (or with `dry_run` only count) what is past its retention period; returns
    {"now", "dry_run", "deleted": {rule: rows}}."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidInput("now needs a time zone", field="now")
    moment = moment.astimezone(UTC)
    counts: dict[str, int] = {}
    with warehouse.lock:
        settings = load_settings(warehouse)
        for name, rule in _rules(settings, moment).items():
            table = warehouse.table(name)
            for key, predicate in _expired(table, name, rule["cutoff"], rule["events"]).items():
                if dry_run:
                    counts[key] = int(table.filter(predicate).count().execute())
                else:
                    counts[key] = warehouse.delete_where(
                        name,
                        lambda t, n=name, r=rule, k=key: _expired(t, n, r["cutoff"], r["events"])[
                            k
                        ],
                    )
        result = {"now": moment.isoformat(), "dry_run": dry_run, "deleted": counts}
        if not dry_run:
            write_audit(
                warehouse,
                ACTION,
                actor=actor,
                subject=None,
                reason="retention periods",
                details={**result, "settings": settings},
            )
    return result
