"""Segments and RFM as named reports (see `insights.reports`): members of a saved segment
or of a rule given inline, the saved segments with their latest size, a segment's size
over time, and the RFM table or its summary."""

from __future__ import annotations

from typing import Any

import ibis

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.insights.frame import Scope
from touchpoints.insights.reports import Option, Report, choice, parse_time, text, whole
from touchpoints.insights.rfm import rfm, rfm_summary
from touchpoints.insights.segment_rules import parse_rule
from touchpoints.insights.segments import members, saved_segments, size_history
from touchpoints.warehouse.connection import Warehouse


def _no_scope(scope: Scope, report: str) -> None:
    if scope.where or scope.start or scope.end:
        raise InvalidInput(f"the {report} report takes as_of, not from, to or where", field="where")


def _members(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    _no_scope(scope, "segment")
    name, rule = options["name"], options["rule"]
    if (name is None) == (rule is None):
        raise InvalidInput("give a saved segment's name or a rule", field="name")
    saved = saved_segments(warehouse)
    if name is not None:
        if name not in saved:
            raise NotFound(f"there is no segment {name!r}", field="name")
        rule = saved[name]
    found = members(warehouse, rule, options["as_of"], segments=saved)
    return found.order_by("customer_id").limit(options["limit"])


def _segments(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    _no_scope(scope, "segments")
    saved = warehouse.table("segments")
    sizes = warehouse.table("segment_sizes")
    latest = sizes.group_by("name").aggregate(
        size=sizes.size.argmax(sizes.computed_at), computed_at=sizes.computed_at.max()
    )
    joined = saved.left_join(latest, saved.name == latest.name)
    return joined.select(
        saved.name, "definition", "created_at", "updated_at", "size", "computed_at"
    ).order_by("name")


def _sizes(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    _no_scope(scope, "segment_sizes")
    return size_history(warehouse, options["name"])


def _rfm(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    table = rfm(warehouse, options["as_of"], scope)
    if options["view"] == "summary":
        return rfm_summary(table)
    return table.order_by([ibis.desc("r"), ibis.desc("f"), ibis.desc("m"), "customer_id"]).limit(
        options["limit"]
    )


def _rule_text(value: str, name: str) -> dict[str, Any]:
    return parse_rule(value)


SEGMENT_REPORTS: dict[str, Report] = {
    "segment": Report("segment", "the members of a saved segment or of a rule", _members, {
        "name": Option(text, None),
        "rule": Option(_rule_text, None, help="a rule as JSON or YAML text"),
        "as_of": Option(parse_time, None),
        "limit": Option(whole(1, 100_000_000), 1_000_000),
    }),
    "segments": Report("segments", "the saved segments and their latest size", _segments),
    "segment_sizes": Report("segment_sizes", "a saved segment's size over time", _sizes, {
        "name": Option(text, required=True),
    }),
    "rfm": Report("rfm", "recency, frequency, monetary scores and named groups", _rfm, {
        "as_of": Option(parse_time, None),
        "view": Option(choice("customers", "summary"), "customers"),
        "limit": Option(whole(1, 100_000_000), 1_000_000),
    }),
}  # fmt: skip
