"""Audiences: saved definitions of who to reach, refreshed on demand or on a schedule.

Three tables hold them (see docs/schema.md): `audiences` (name, definition as JSON
text), `audience_members` (one row per stay: `entered_at` the refresh that found the
customer, `left_at` the refresh that no longer did, null while they are in) and
`audience_sizes` (one row per refresh: size, entered, left). Who is in an audience is
decided by `touchpoints.activate.audience_sources`; exports by
`touchpoints.activate.audience_exports`.

A refresh compares the members found now with the open stays: those new get a stay,
those gone have theirs closed, and the counts are appended to the size history. It holds
`warehouse.lock` throughout, so two refreshes never interleave; a refresh that finds
nothing changed records entered = left = 0.

`refresh_due` refreshes the audiences whose `refresh_every_minutes` has passed since
their last refresh (or that were never refreshed). A refresh that fails is remembered
(meta `audience_error:NAME`) and not retried before the next scheduled time, so a broken
definition does not refit a model every few seconds.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa

from touchpoints.activate.audience_sources import (
    ModelScores,
    check_definition,
    find_members,
    kind_of,
)
from touchpoints.errors import Conflict, InvalidInput, NotFound, TouchpointsError
from touchpoints.insights.frame import USER
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import AUDIENCE_MEMBERS, AUDIENCE_SIZES, AUDIENCES

__all__ = [
    "current_members",
    "delete_audience",
    "get_audience",
    "history_rows",
    "list_audiences",
    "members_page",
    "open_stays",
    "refresh",
    "refresh_due",
    "save_audience",
    "size_history",
    "stored_audience",
]

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}")
ERROR_KEY = "audience_error:"
#: Tables whose definitions may name an audience (`"audience": NAME` anywhere inside).
USERS = {"campaigns": "campaign_id", "triggers": "name"}


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> pa.Array:
    return pa.array([moment], pa.timestamp("us", tz="UTC"))


# -- definitions -------------------------------------------------------------------------


def _definitions(warehouse: Warehouse) -> dict[str, dict[str, Any]]:
    rows = warehouse.table("audiences").to_pyarrow().to_pylist()
    return {r["name"]: {**r, "definition": json.loads(r["definition"])} for r in rows}


def stored_audience(warehouse: Warehouse, name: str) -> dict[str, Any]:
    """The stored row of the audience, its definition parsed (`NotFound` when none)."""
    table = warehouse.table("audiences")
    rows = table.filter(table.name == name).to_pyarrow().to_pylist()
    if not rows:
        raise NotFound(f"there is no audience {name!r}", field="name")
    return {**rows[0], "definition": json.loads(rows[0]["definition"])}


def save_audience(warehouse: Warehouse, name: str, definition: Any) -> dict[str, Any]:
    """Create or replace the audience `name` after checking its definition (see
    `audience_sources`). Members stay as they are until the next refresh. Returns the
    stored definition and, for an uploaded list, how many identifiers match now."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            "an audience name is 1-100 letters, digits, spaces, '_', '-' or '.'", field="name"
        )
    with warehouse.lock:
        text = json.dumps(check_definition(warehouse, definition), sort_keys=True, default=_plain)
        checked = json.loads(text)
        now = datetime.now(UTC)
        table = warehouse.table("audiences")
        exists = int(table.filter(table.name == name).count().to_pyarrow().as_py())
        if exists:
            warehouse.update_rows(
                "audiences", "name", name, {"definition": text, "updated_at": now}
            )
        else:
            row = {"name": [name], "definition": [text], "created_at": _stamp(now),
                   "updated_at": _stamp(now)}  # fmt: skip
            warehouse.insert("audiences", pa.table(row, schema=AUDIENCES.to_pyarrow()))
        out: dict[str, Any] = {"name": name, "definition": checked}
        if kind_of(checked) == "list":
            out.update(find_members(warehouse, checked, now).notes)
    return out


def _plain(value: Any) -> str:
    if isinstance(value, date):  # YAML reads unquoted dates as dates
        return value.isoformat()
    raise InvalidInput(f"{str(value)[:40]!r} cannot be stored in a definition", field="definition")


def get_audience(warehouse: Warehouse, name: str) -> dict[str, Any]:
    """The audience's definition, current size and last refresh (and the last failed
    refresh, when it is newer)."""
    with warehouse.lock:
        stored = stored_audience(warehouse, name)
        last = _last_refresh(warehouse, [name]).get(name)
        error = _errors(warehouse).get(name)
    out = {
        "name": name,
        "definition": stored["definition"],
        "kind": kind_of(stored["definition"]),
        "created_at": stored["created_at"].isoformat(),
        "updated_at": stored["updated_at"].isoformat(),
        "size": last["size"] if last else None,
        "last_refreshed": last["computed_at"].isoformat() if last else None,
    }
    if error and (last is None or error["at"] > last["computed_at"].isoformat()):
        out["last_error"] = error
    return out


def list_audiences(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every audience with its kind, schedule, description, current size and last
    refresh, by name."""
    with warehouse.lock:
        stored = _definitions(warehouse)
        last = _last_refresh(warehouse, list(stored))
    out = []
    for name in sorted(stored):
        definition = stored[name]["definition"]
        latest = last.get(name)
        out.append({
            "name": name,
            "kind": kind_of(definition),
            "description": definition.get("description"),
            "refresh_every_minutes": definition.get("refresh_every_minutes"),
            "size": latest["size"] if latest else None,
            "last_refreshed": latest["computed_at"].isoformat() if latest else None,
            "updated_at": stored[name]["updated_at"].isoformat(),
        })  # fmt: skip
    return out


def delete_audience(warehouse: Warehouse, name: str) -> dict[str, Any]:
    """Remove an audience, its stays and its size history; refused (`Conflict`) while a
    campaign or trigger names it."""
    with warehouse.lock:
        stored_audience(warehouse, name)
        users = _users(warehouse, name)
        if users:
            raise Conflict(f"audience {name!r} is used by {', '.join(users)}", field="name")
        warehouse.delete_where("audience_members", lambda t: t.audience == name)
        warehouse.delete_where("audience_sizes", lambda t: t.audience == name)
        warehouse.delete_where("meta", lambda t: t.key == ERROR_KEY + name)
        warehouse.delete_where("audiences", lambda t: t.name == name)
    return {"deleted": name}


def _users(warehouse: Warehouse, name: str) -> list[str]:
    found = []
    for table_name, key in USERS.items():
        rows = warehouse.table(table_name).select(key, "definition").to_pyarrow().to_pylist()
        for row in rows:
            try:
                definition = json.loads(row["definition"])
            except ValueError:
                continue
            if _names(definition, name):
                found.append(f"{table_name[:-1]} {row[key]!r}")
    return sorted(found)


def _names(value: Any, name: str) -> bool:
    if isinstance(value, Mapping):
        return value.get("audience") == name or any(_names(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, name) for v in value)
    return False


# -- members and sizes -------------------------------------------------------------------


def current_members(warehouse: Warehouse, name: str) -> ir.Table:
    """The members as of the last refresh (`customer_id`)."""
    return open_stays(warehouse, name).select(USER)


def open_stays(warehouse: Warehouse, name: str) -> ir.Table:
    """The stays still open (`customer_id`, `entered_at`): the current members."""
    stays = warehouse.table("audience_members")
    return stays.filter((stays.audience == name) & stays.left_at.isnull()).select(
        USER, "entered_at"
    )


def size_history(warehouse: Warehouse, name: str) -> ir.Table:
    """Every refresh of the audience (`computed_at`, `size`, `entered`, `left`), oldest
    first."""
    sizes = warehouse.table("audience_sizes")
    return (
        sizes.filter(sizes.audience == name)
        .select("computed_at", "size", "entered", "left")
        .order_by("computed_at")
    )


def _last_refresh(warehouse: Warehouse, names: list[str]) -> dict[str, dict[str, Any]]:
    """The latest `audience_sizes` row of each audience named."""
    if not names:
        return {}
    sizes = warehouse.table("audience_sizes")
    mine = sizes.filter(sizes.audience.isin(names))
    latest = mine.group_by("audience").agg(last=mine.computed_at.max())
    rows = (
        mine.join(latest, (mine.audience == latest.audience) & (mine.computed_at == latest["last"]))
        .select(mine.audience, mine.computed_at, mine.size)
        .to_pyarrow()
        .to_pylist()
    )
    return {r["audience"]: r for r in rows}


def _errors(warehouse: Warehouse) -> dict[str, dict[str, str]]:
    meta = warehouse.table("meta")
    rows = meta.filter(meta.key.startswith(ERROR_KEY)).to_pyarrow().to_pylist()
    return {r["key"][len(ERROR_KEY) :]: json.loads(r["value"]) for r in rows}


# -- refreshing --------------------------------------------------------------------------


def refresh(
    warehouse: Warehouse,
    name: str,
    *,
    now: datetime | None = None,
    models: ModelScores | None = None,
) -> dict[str, Any]:
    """Find the members now, record who entered and who left, append the size; returns
    {name, computed_at, size, entered, left, entered_ids, left_ids} (and, for an
    uploaded list, `listed` and `unmatched`)."""
    moment = _utc(now)
    with warehouse.lock:
        definition = stored_audience(warehouse, name)["definition"]
        found = find_members(warehouse, definition, moment, models)
        stays = open_stays(warehouse, name).to_pyarrow().to_pylist()
        present = {row[USER]: row["entered_at"] for row in stays}
        entered = sorted(found.customer_ids - present.keys())
        left = sorted(present.keys() - found.customer_ids)
        if left:
            closed = {
                "audience": [name] * len(left),
                USER: left,
                "entered_at": pa.array([present[c] for c in left], pa.timestamp("us", tz="UTC")),
                "left_at": pa.array([moment] * len(left), pa.timestamp("us", tz="UTC")),
            }
            warehouse.update_many(
                "audience_members", ("audience", USER, "entered_at"), pa.table(closed)
            )
        if entered:
            opened = {
                "audience": [name] * len(entered),
                USER: entered,
                "entered_at": pa.array([moment] * len(entered), pa.timestamp("us", tz="UTC")),
                "left_at": pa.nulls(len(entered), pa.timestamp("us", tz="UTC")),
            }
            schema = AUDIENCE_MEMBERS.to_pyarrow()
            warehouse.insert("audience_members", pa.table(opened, schema=schema))
        size = len(found.customer_ids)
        row = {"audience": [name], "computed_at": _stamp(moment), "size": [size],
               "entered": [len(entered)], "left": [len(left)]}  # fmt: skip
        warehouse.insert("audience_sizes", pa.table(row, schema=AUDIENCE_SIZES.to_pyarrow()))
    return {
        "name": name,
        "computed_at": moment.isoformat(),
        "size": size,
        "entered": len(entered),
        "left": len(left),
        "entered_ids": entered,
        "left_ids": left,
        **found.notes,
    }


def refresh_due(
    warehouse: Warehouse, *, now: datetime | None = None, models: ModelScores | None = None
) -> list[dict[str, Any]]:
    """Refresh every audience whose schedule says it is due; returns their `refresh`
    results. One query when no audience has a schedule; a failure is logged and
    remembered (see the module docstring), and the others still refresh."""
    moment = _utc(now)
    with warehouse.lock:
        table = warehouse.table("audiences")
        rows = table.select("name", "definition").to_pyarrow().to_pylist()
        every = {}
        for row in rows:
            minutes = json.loads(row["definition"]).get("refresh_every_minutes")
            if minutes:
                every[row["name"]] = timedelta(minutes=minutes)
        if not every:
            return []
        last = {n: r["computed_at"] for n, r in _last_refresh(warehouse, list(every)).items()}
        for failed, error in _errors(warehouse).items():
            at = datetime.fromisoformat(error["at"])
            if failed in every and (failed not in last or at > last[failed]):
                last[failed] = at
        due = sorted(n for n, gap in every.items() if n not in last or last[n] + gap <= moment)
        results = []
        for name in due:
            try:
                results.append(refresh(warehouse, name, now=moment, models=models))
            except TouchpointsError as exc:
                log.warning("audience %r was not refreshed: %s", name, exc.message)
                error = {"at": moment.isoformat(), "message": exc.message, "field": exc.field}
                warehouse.set_meta(ERROR_KEY + name, json.dumps(error))
    return results


def members_page(warehouse: Warehouse, name: str, limit: int) -> dict[str, Any]:
    """The first `limit` members by customer id, with the size (for the API and CLI)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1_000_000:
        raise InvalidInput("limit is a whole number from 1 to 1000000", field="limit")
    with warehouse.lock:
        stored_audience(warehouse, name)
        found = current_members(warehouse, name)
        size = int(found.count().to_pyarrow().as_py())
        ids = found.order_by(USER).limit(limit).to_pyarrow().column(USER).to_pylist()
    return {"name": name, "size": size, "members": ids}


def history_rows(warehouse: Warehouse, name: str) -> list[dict[str, Any]]:
    """`size_history` as plain rows, times in ISO text."""
    rows = size_history(warehouse, name).to_pyarrow().to_pylist()
    return [{**r, "computed_at": r["computed_at"].isoformat()} for r in rows]
