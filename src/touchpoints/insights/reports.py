"""Named reports: plain text parameters (from a command line or a URL query) turned into
one analysis over the warehouse, and its rows. The CLI and the API both call `run_report`,
so they cannot drift apart, and each stays a thin layer.

Every report takes the scope parameters `from`, `to` (a date or an ISO 8601 time, UTC
unless it says otherwise; a bare date for `to` means through the end of that day) and
`where` (repeatable `FIELD=VALUE` / `FIELD!=VALUE`, see `frame.Scope`), plus its own
options listed in `REPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from touchpoints.errors import InvalidInput
from touchpoints.insights import funnels, kpis, paths, retention, web
from touchpoints.insights.frame import (
    Condition,
    Period,
    Scope,
    first_seen,
    needs_technology,
    user_events,
)
from touchpoints.insights.sessions import DEFAULT_TIMEOUT, sessionize, sessions
from touchpoints.warehouse.connection import Warehouse

#: Channels the web report reads unless a `where` condition names channels itself.
WEB_CHANNELS = ("web", "app")
Params = Mapping[str, str | Sequence[str] | None]


@dataclass(frozen=True)
class Option:
    """One parameter of a report: how to read it from text, and its default."""

    parse: Callable[[str, str], Any]
    default: Any = None
    many: bool = False
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class Report:
    name: str
    summary: str
    #: An Ibis table, a pandas DataFrame or ready rows.
    build: Callable[[Warehouse, Scope, dict[str, Any]], ir.Table | pd.DataFrame | ReportResult]
    options: dict[str, Option] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    columns: list[str]
    rows: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


# -- reading parameters ---------------------------------------------------------------


def parse_time(text: str, name: str, *, end: bool = False) -> datetime:
    """A date or ISO 8601 time as an aware UTC datetime; a bare date as an end bound
    is the next midnight, so `to=2026-03-31` includes the 31st."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date (2026-03-31) or a time (2026-03-31T12:00:00Z), not {text!r}",
            field=name,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def text(value: str, name: str) -> str:
    if not value.strip():
        raise InvalidInput(f"{name} must not be empty", field=name)
    return value.strip()


def whole(low: int, high: int) -> Callable[[str, str], int]:
    def parse(value: str, name: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise InvalidInput(
                f"{name} must be a whole number from {low} to {high}, not {value!r}", field=name
            )
        return number

    return parse


def choice(*choices: str) -> Callable[[str, str], str]:
    def parse(value: str, name: str) -> str:
        if value not in choices:
            raise InvalidInput(
                f"{name} must be one of {', '.join(choices)}, not {value!r}", field=name
            )
        return value

    return parse


def _window(value: str, name: str) -> timedelta:
    return funnels.parse_window(value)


def _step(value: str, name: str) -> funnels.Step:
    return funnels.Step.parse(value)


PERIODS = choice(*Period)
CYCLE_PERIODS = choice(Period.day, Period.week, Period.month)


def _values(params: Params, name: str) -> list[str]:
    raw = params.get(name)
    if raw is None:
        return []
    return [raw] if isinstance(raw, str) else [v for v in raw if v is not None]


def read_scope(params: Params) -> Scope:
    start, end = _values(params, "from"), _values(params, "to")
    return Scope(
        start=parse_time(start[-1], "from") if start else None,
        end=parse_time(end[-1], "to", end=True) if end else None,
        where=tuple(Condition.parse(text) for text in _values(params, "where")),
    )


def read_options(report: Report, params: Params) -> dict[str, Any]:
    known = {"from", "to", "where", *report.options}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInput(
            f"the {report.name} report has no parameter {unknown[0]!r}; it takes "
            + ", ".join(sorted(known)),
            field=unknown[0],
        )
    options: dict[str, Any] = {}
    for name, option in report.options.items():
        values = _values(params, name)
        if option.required and not values:
            raise InvalidInput(f"the {report.name} report needs {name}", field=name)
        if option.many:
            options[name] = [option.parse(v, name) for v in values]
        else:
            options[name] = option.parse(values[-1], name) if values else option.default
    return options


# -- the reports ----------------------------------------------------------------------


def _web_scope(scope: Scope) -> Scope:
    """The web report looks at web and app events unless told which channels."""
    if "channel" in scope.fields:
        return scope
    extra = tuple(Condition("channel", c) for c in WEB_CHANNELS)
    return Scope(scope.start, scope.end, scope.where + extra)


def _sessions(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    technology = needs_technology([options.get("by")])
    events = user_events(warehouse, scope, technology=technology)
    return sessionize(events, options.get("timeout") or DEFAULT_TIMEOUT)


def _web(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    visits = sessions(_sessions(warehouse, _web_scope(scope), options))
    return web.web_overview(visits, options["period"], options["by"], first_seen(warehouse))


def _pages(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    sessionized = _sessions(warehouse, _web_scope(scope), options)
    return web.top_pages(sessionized, sessions(sessionized), options["limit"])


def _funnel(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    events = user_events(warehouse, scope, technology=needs_technology([options["by"]]))
    steps, window = options["step"], options["window"]
    if options["dropped_after"] is not None:
        return funnels.dropped_after(events, steps, window, options["dropped_after"])
    return funnels.funnel(events, steps, window, options["by"])


def _paths(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    anchors = [(d, options[k]) for d, k in (("after", "from_event"), ("before", "to_event"))]
    chosen = [(d, a) for d, a in anchors if a]
    if len(chosen) != 1:
        raise InvalidInput("give one of from_event or to_event", field="from_event")
    direction, anchor = chosen[0]
    sessionized = _sessions(warehouse, scope, options)
    if options["sankey"]:
        return paths.sankey(sessionized, anchor, direction, options["steps"])
    return paths.paths(sessionized, anchor, direction, options["steps"], options["top"])


def _retention(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    events = user_events(warehouse, scope)
    if options["lifecycle"]:
        return retention.lifecycle(events, options["period"])
    return retention.retention(
        events, options["period"], options["start_event"], options["return_event"],
        options["periods"],
    )  # fmt: skip


def _kpis(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ir.Table:
    if options["customers"]:
        return kpis.customer_retention(user_events(warehouse, scope), options["period"])
    visits = sessions(_sessions(warehouse, scope, options))
    spend = warehouse.table("spend")
    if scope.start is not None:
        spend = spend.filter(spend.date >= scope.start.date())
    if scope.end is not None:
        spend = spend.filter(spend.date < scope.end.date())
    firsts = kpis.first_orders(user_events(warehouse))
    return kpis.campaign_kpis(visits, spend, options["by"], options["period"], firsts)


def flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{name} is true or false, not {value!r}", field=name)


_TIMEOUT = Option(_window, DEFAULT_TIMEOUT, help="session timeout (30m)")

REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report("web", "sessions, users, views, bounce and engagement per period", _web, {
            "period": Option(PERIODS, Period.day),
            "by": Option(choice(*web.BREAKDOWNS), None),
            "timeout": _TIMEOUT,
        }),
        Report("pages", "the most viewed pages and screens, entrances and exits", _pages, {
            "limit": Option(whole(1, 10_000), 20),
            "timeout": _TIMEOUT,
        }),
        Report("funnel", "users reaching each ordered step within the window", _funnel, {
            "step": Option(_step, many=True, required=True),
            "window": Option(_window, timedelta(days=7)),
            "by": Option(text, None),
            "dropped_after": Option(whole(1, funnels.MAX_STEPS - 1), None),
        }),
        Report("paths", "the most common next or previous steps in a session", _paths, {
            "from_event": Option(text, None),
            "to_event": Option(text, None),
            "steps": Option(whole(1, paths.MAX_STEPS), 3),
            "top": Option(whole(1, 10_000), 20),
            "sankey": Option(flag, False),
            "timeout": _TIMEOUT,
        }),
        Report("retention", "cohort retention, or the lifecycle of users", _retention, {
            "period": Option(CYCLE_PERIODS, Period.week),
            "start_event": Option(_step, None),
            "return_event": Option(_step, None),
            "periods": Option(whole(0, 400), 12),
            "lifecycle": Option(flag, False),
        }),
        Report("kpis", "campaign KPIs by channel or campaign, or customer retention", _kpis, {
            "by": Option(choice(*kpis.GROUPINGS), "channel"),
            "period": Option(PERIODS, Period.all),
            "customers": Option(flag, False),
            "timeout": _TIMEOUT,
        }),
    )
}  # fmt: skip


def run_report(
    warehouse: Warehouse, name: str, params: Params, registry: Mapping[str, Report] = REPORTS
) -> ReportResult:
    """The rows of report `name` (from `registry`) for text parameters `params`."""
    report = registry.get(name)
    if report is None:
        raise InvalidInput(
            f"there is no report {name!r}; choose one of {', '.join(registry)}", field="report"
        )
    options = read_options(report, params)
    if name == "kpis" and options["customers"] and options["period"] == Period.all:
        options["period"] = Period.month
    built = report.build(warehouse, read_scope(params), options)
    if isinstance(built, ReportResult):
        return built
    if isinstance(built, pd.DataFrame):
        table = pa.Table.from_pandas(built, preserve_index=False)
    else:
        table = built.to_pyarrow()
    if options.get("period") == Period.all and "period" in table.column_names:
        table = table.drop_columns(["period"])  # one period: the date would only mislead
    return ReportResult(table.column_names, table.to_pylist())
