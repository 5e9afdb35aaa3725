"""What every analysis starts from: the events in scope, each with its user, and periods.

The user rule is stated once, in `touchpoints.identity.attribution.with_customer`: the
resolved customer where identities have been built, otherwise the user id, otherwise the
anonymous id. Its column is `USER` (`customer_id`) in every table below.

A `Scope` is the time range (start inclusive, end exclusive, both UTC) and the `--where`
conditions. Conditions on the same field are alternatives (OR); different fields must
all hold (AND). A field is a column name from `FIELDS`, or any event property
(`plan` or `properties.plan`), trait (`traits.tier`) or context value
(`context.os.name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.identity.attribution import with_customer
from touchpoints.identity.config import IdentityConfig
from touchpoints.insights.useragent import TECHNOLOGY_FIELDS, with_technology
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

USER = "customer_id"


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"
    all = "all"


_TRUNCATE = {Period.day: "D", Period.week: "W", Period.month: "M"}


def period_start(ts: ir.TimestampValue, period: Period | str) -> ir.DateValue:
    """The first day of the period holding `ts` (weeks start on Monday, ISO 8601).
    For `Period.all`, a constant 1970-01-01 so that everything falls in one period."""
    period = Period(period)
    if period is Period.all:
        return ibis.date(1970, 1, 1)
    return ts.truncate(_TRUNCATE[period]).date()


def period_index(day: ir.DateValue, period: Period | str) -> ir.IntegerValue:
    """A counter of periods since 1970 (day, ISO week or month), so that the distance
    between two periods is a subtraction."""
    period = Period(period)
    if period is Period.month:
        return day.year() * 12 + day.month() - 1
    days = day.epoch_days()
    if period is Period.week:
        return (days + 3) // 7  # 1970-01-01 was a Thursday: Monday-based week numbers
    if period is Period.day:
        return days
    return ibis.literal(0)


_STEP = {
    Period.day: ibis.interval(days=1),
    Period.week: ibis.interval(days=7),
    Period.month: ibis.interval(months=1),
}


def period_calendar(bounds: ir.Table, period: Period | str) -> ir.Table:
    """Every period from `bounds._lo` to `bounds._hi` (first days of periods, a one-row
    table), gaps included: `period` (its first day) and `_index` (`period_index`)."""
    period = Period(period)
    step = _STEP[period]
    days = ibis.range(bounds._lo.cast("timestamp"), bounds._hi.cast("timestamp") + step, step)
    calendar = bounds.select(_day=days.unnest())
    calendar = calendar.select(period=calendar._day.date())
    return calendar.mutate(_index=period_index(calendar.period, period))


#: Fields a condition or breakdown may name, besides event properties.
COLUMN_FIELDS = {
    "channel": "channel",
    "type": "type",
    "event": "event",
    "name": "name",
    "source": "utm_source",
    "medium": "utm_medium",
    "campaign": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
    "path": "page_path",
    "url": "page_url",
    "referrer": "page_referrer",
    "locale": "locale",
    "currency": "currency",
    "source_id": "source_id",
}
FIELDS = (*COLUMN_FIELDS, "country", *TECHNOLOGY_FIELDS)


def event_field(events: ir.Table, name: str) -> ir.StringValue:
    """The text value of a named field of each event (see the module docstring)."""
    if name in COLUMN_FIELDS:
        return events[COLUMN_FIELDS[name]].cast("string")
    if name == "country":
        return json_text(events.context, "location.country")
    if name in TECHNOLOGY_FIELDS:
        if name not in events.columns:
            raise InvalidInput(f"{name} needs the events parsed by with_technology", field=name)
        return events[name]
    head, dot, rest = name.partition(".")
    if dot and head in ("properties", "traits", "context") and rest:
        return json_text(events[head], rest)
    if not name or not all(part.replace("_", "").replace("-", "").isalnum() for part in
                           name.split(".")):  # fmt: skip
        raise InvalidInput(f"{name!r} is not a field or property name", field="where")
    return json_text(events.properties, name)


@dataclass(frozen=True)
class Condition:
    """`field=value` or `field!=value` (a missing value counts as different)."""

    field: str
    value: str
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> Condition:
        name, sep, value = text.partition("!=")
        negate = bool(sep)
        if not sep:
            name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(
                f"a condition is FIELD=VALUE or FIELD!=VALUE, not {text!r}", field="where"
            )
        return cls(name.strip(), value.strip(), negate)


@dataclass(frozen=True)
class Scope:
    """Which events an analysis looks at."""

    start: datetime | None = None
    end: datetime | None = None
    where: tuple[Condition, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.start and self.end and self.end <= self.start:
            raise InvalidInput("the end of the range must come after its start", field="to")

    @property
    def fields(self) -> set[str]:
        return {c.field for c in self.where}


def apply_scope(events: ir.Table, scope: Scope) -> ir.Table:
    """`events` cut to the scope's time range and conditions."""
    if scope.start is not None:
        events = events.filter(events.timestamp >= scope.start)
    if scope.end is not None:
        events = events.filter(events.timestamp < scope.end)
    by_field: dict[str, list[Condition]] = {}
    for condition in scope.where:
        by_field.setdefault(condition.field, []).append(condition)
    for name, conditions in by_field.items():
        value = event_field(events, name)
        tests = [
            value.isnull() | (value != c.value) if c.negate else value == c.value
            for c in conditions
        ]
        events = events.filter(ibis.or_(*tests))
    return events


def needs_technology(names: Iterable[str | None]) -> bool:
    return any(name in TECHNOLOGY_FIELDS for name in names)


def user_events(
    warehouse: Warehouse,
    scope: Scope = Scope(),
    *,
    technology: bool = False,
    config: IdentityConfig | None = None,
) -> ir.Table:
    """The events in scope with their user (`USER`) and, when asked or a condition needs
    it, the device, browser and OS parsed from the user agent."""
    events = with_customer(warehouse.table("events"), warehouse.table("identities"), config)
    if technology or needs_technology(scope.fields):
        events = with_technology(events)
    return apply_scope(events, scope)


def first_seen(warehouse: Warehouse, config: IdentityConfig | None = None) -> ir.Table:
    """Each user's first event in the whole log (`USER`, `first_seen`): what makes a
    user new, whatever the scope."""
    events = with_customer(warehouse.table("events"), warehouse.table("identities"), config)
    return events.group_by(USER).aggregate(first_seen=events.timestamp.min())
