"""Segments: who matches a rule, saved segments, their sizes, and member exports.

The rule language is documented in `touchpoints.insights.segment_rules`. A rule is
evaluated over the *customer table*: one row per customer of the `profiles` table or of
an event before `as_of` (customers whose events came after the last profile build have
no traits or computed values, so only event rules can match them), with

- the profile's `traits` and computed columns as of the last `touchpoints build`;
- one count per distinct ``did``/``did_not`` node: the customer's matching events
  before `as_of` (``in_last_days: D`` means from `as_of` - D days, inclusive, to `as_of`,
  exclusive; ``since`` from that time, inclusive).

`as_of` defaults to now (UTC). Everything is one Ibis expression, so it runs on DuckDB
and Spark alike.

Saved segments live in two tables: `segments` (name, definition as JSON text,
created_at, updated_at) and `segment_sizes` (name, computed_at, size: one row per
evaluation, `computed_at` being the `as_of` it was evaluated at). Only the functions
under "storage" below touch them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from touchpoints.errors import Conflict, InvalidInput, NotFound
from touchpoints.insights.frame import USER, user_events
from touchpoints.insights.segment_rules import (
    COMPUTED,
    Rule,
    RuleChecker,
    count_columns,
    count_expr,
    parse_rule,
    predicate,
)
from touchpoints.warehouse import Warehouse

SEGMENTS = "segments"
SEGMENT_SIZES = "segment_sizes"
_SEGMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}")


def _as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)


def _rule(rule: Rule | str) -> Rule:
    return parse_rule(rule) if isinstance(rule, str) else rule


def membership_table(
    profiles: ir.Table,
    events: ir.Table,
    rules: Mapping[str, Rule | str],
    as_of: datetime,
    segments: Mapping[str, Rule] | None = None,
) -> ir.Table:
    """`customer_id` and one never-null boolean column per named rule (the customer
    table of the module docstring, over these `profiles` and attributed `events`)."""
    checker = RuleChecker(segments)
    nodes = {name: checker.check(_rule(rule)) for name, rule in rules.items()}
    columns = count_columns(list(nodes.values()))
    before = events.filter(events.timestamp < as_of)
    counts = before.group_by(USER).agg(
        _events=before.count(), **{c: count_expr(before, k, as_of) for k, c in columns.items()}
    )
    joined = profiles.outer_join(counts, profiles[USER] == counts[USER])
    table = joined.select(
        ibis.coalesce(profiles[USER], counts[USER]).name(USER),
        profiles.traits,
        *(profiles[c] for c in COMPUTED),
        *(ibis.coalesce(counts[c], 0).name(c) for c in columns.values()),
    )
    return table.select(
        USER, **{name: predicate(node, table, columns) for name, node in nodes.items()}
    )


def membership(
    warehouse: Warehouse,
    rules: Mapping[str, Rule | str],
    as_of: datetime | None = None,
    *,
    segments: Mapping[str, Rule] | None = None,
) -> ir.Table:
    """Every customer with one boolean column per named rule, in one query."""
    return membership_table(
        warehouse.table("profiles"), user_events(warehouse), rules, _as_of(as_of), segments
    )


def members(
    warehouse: Warehouse,
    rule: Rule | str,
    as_of: datetime | None = None,
    *,
    segments: Mapping[str, Rule] | None = None,
) -> ir.Table:
    """The customers (`customer_id`) matching `rule` (a dict tree, or JSON/YAML text);
    `segments` are the saved definitions a ``segment`` node may name."""
    flags = membership(warehouse, {"member": rule}, as_of, segments=segments)
    return flags.filter(flags.member).select(USER)


# -- storage ---------------------------------------------------------------------------


def saved_segments(warehouse: Warehouse) -> dict[str, dict[str, Any]]:
    """Every saved segment's definition, by name."""
    rows = warehouse.table(SEGMENTS).select("name", "definition").to_pyarrow().to_pylist()
    return {row["name"]: json.loads(row["definition"]) for row in rows}


def get_segment(warehouse: Warehouse, name: str) -> dict[str, Any]:
    """The definition of the saved segment `name` (`NotFound` when there is none)."""
    table = warehouse.table(SEGMENTS)
    found = table.filter(table.name == name).definition.to_pyarrow().to_pylist()
    if not found:
        raise NotFound(f"there is no segment {name!r}", field="name")
    return json.loads(found[0])


def save_segment(warehouse: Warehouse, name: str, rule: Rule | str) -> dict[str, Any]:
    """Create or replace the segment `name` after checking its rule against the other
    saved segments (references must exist, no cycles); returns the stored definition."""
    if not isinstance(name, str) or not _SEGMENT_NAME.fullmatch(name):
        raise InvalidInput(
            "a segment name is 1-100 letters, digits, spaces, '_', '-' or '.'", field="name"
        )
    definition = json.loads(json.dumps(_rule(rule), default=_json_default))
    with warehouse.lock:
        saved = saved_segments(warehouse)
        RuleChecker({**saved, name: definition}).check(definition, stack=(name,))
        text = json.dumps(definition, sort_keys=True)
        now = datetime.now(UTC)
        if name in saved:
            warehouse.update_rows(SEGMENTS, "name", name, {"definition": text, "updated_at": now})
        else:
            stamp = pa.array([now], pa.timestamp("us", tz="UTC"))
            row = {"name": [name], "definition": [text], "created_at": stamp, "updated_at": stamp}
            warehouse.insert(SEGMENTS, pa.table(row))
    return definition


def delete_segment(warehouse: Warehouse, name: str) -> None:
    """Remove a saved segment and its size history; refused (`Conflict`) while another
    saved segment refers to it."""
    with warehouse.lock:
        saved = saved_segments(warehouse)
        if name not in saved:
            raise NotFound(f"there is no segment {name!r}", field="name")
        users = [other for other, rule in saved.items() if other != name and _refers(rule, name)]
        if users:
            raise Conflict(f"segment {name!r} is used by {', '.join(sorted(users))}", field="name")
        for table_name in (SEGMENTS, SEGMENT_SIZES):
            table = warehouse.table(table_name)
            kept = table.filter(table.name != name).to_pyarrow()
            warehouse.truncate(table_name)
            warehouse.insert(table_name, kept)


@dataclass(frozen=True)
class SegmentResult:
    """One evaluation of a saved segment."""

    name: str
    as_of: datetime
    size: int
    members: ir.Table


def evaluate_segment(
    warehouse: Warehouse, name: str, as_of: datetime | None = None, *, record: bool = True
) -> SegmentResult:
    """The members and size of the saved segment `name` at `as_of` (default now); the
    size is appended to `segment_sizes` unless `record` is false."""
    saved = saved_segments(warehouse)
    if name not in saved:
        raise NotFound(f"there is no segment {name!r}", field="name")
    moment = _as_of(as_of)
    found = members(warehouse, saved[name], moment, segments=saved)
    size = int(found.count().to_pyarrow().as_py())
    if record:
        warehouse.insert(
            SEGMENT_SIZES,
            pa.table(
                {
                    "name": [name],
                    "computed_at": pa.array([moment], pa.timestamp("us", tz="UTC")),
                    "size": pa.array([size], pa.int64()),
                }
            ),
        )
    return SegmentResult(name, moment, size, found)


def size_history(warehouse: Warehouse, name: str) -> ir.Table:
    """The recorded sizes of a segment (`computed_at`, `size`), oldest first."""
    sizes = warehouse.table(SEGMENT_SIZES)
    return sizes.filter(sizes.name == name).select("computed_at", "size").order_by("computed_at")


# -- export ----------------------------------------------------------------------------


def members_frame(found: ir.Table) -> pd.DataFrame:
    """Members as a pandas DataFrame, sorted by `customer_id`."""
    return found.order_by(USER).to_pandas()


def export_members(found: ir.Table, path: str | Path, format: str | None = None) -> int:
    """Write members to CSV or Parquet (`format`, or the file's suffix); returns how many."""
    path = Path(path)
    chosen = (format or path.suffix.lstrip(".")).lower()
    if chosen not in ("csv", "parquet"):
        raise InvalidInput(f"export as csv or parquet, not {chosen or 'nothing'!r}", field="format")
    table = found.order_by(USER).to_pyarrow()
    if chosen == "csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return table.num_rows


def _refers(rule: Any, name: str) -> bool:
    if isinstance(rule, Mapping):
        return rule.get("segment") == name or any(_refers(v, name) for v in rule.values())
    if isinstance(rule, list):
        return any(_refers(v, name) for v in rule)
    return False


def _json_default(value: Any) -> str:
    if isinstance(value, date):  # YAML reads unquoted dates as dates
        return value.isoformat()
    raise InvalidInput(f"{value!r} cannot be stored in a rule", field="rule")
