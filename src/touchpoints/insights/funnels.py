"""Funnels with the semantics of ClickHouse's `windowFunnel` in its default mode.

Steps are ordered; each is an event name (`page:/path` and `screen:Name` for views) with
optional property conditions. A user reaches step k when there are events e1, …, ek
matching steps 1..k with t1 <= t2 <= … <= tk and tk <= t1 + window. As in ClickHouse:

- ties count as in order (ClickHouse sorts by time, then step), so one event that
  matches two consecutive steps completes both;
- the window is inclusive and applies to the last step against the first;
- events matching no step are ignored, and any step-1 event may start the chain.

It is computed without a per-user loop: S_k(e), the latest possible start of a chain
ending at step-k event e, is the running maximum of S_{k-1} over the user's earlier
step-(k-1) events (ordered by time, then step); e completes step k when
t(e) - S_k(e) <= window. The latest start is always the best one, so this gives the
same answer as ClickHouse's greedy scan.

Time to convert to step k is, per user, the shortest t(e) - S_k(e) among the step-k
events that complete it; the report gives its median and 90th percentile (linear
interpolation) over the users who reached step k. A breakdown value is read from the
user's earliest step-1 event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Condition, event_field
from touchpoints.insights.sessions import view_name
from touchpoints.warehouse.functions import epoch_micros

MAX_STEPS = 20
_STEP = re.compile(r"^(?P<name>[^\[\]]+?)\s*(\[(?P<where>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class Step:
    """One funnel step: `Order Completed`, `page:/checkout`, `screen:Home`, with optional
    conditions written `Product Viewed[category=Shoes,brand!=Acme]`."""

    name: str
    where: tuple[Condition, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Step:
        match = _STEP.match(text.strip())
        if not match:
            raise InvalidInput(
                f"a step is EVENT or EVENT[field=value,…], not {text!r}", field="steps"
            )
        where = match.group("where")
        conditions = tuple(Condition.parse(c) for c in where.split(",")) if where else ()
        return cls(match.group("name").strip(), conditions)

    def matches(self, events: ir.Table) -> ir.BooleanValue:
        kind, sep, rest = self.name.partition(":")
        if sep and kind in ("page", "screen") and rest:
            test = (events.type == kind) & (view_name(events) == rest)
        else:
            test = (events.type == "track") & (events.event == self.name)
        for condition in self.where:
            value = event_field(events, condition.field)
            test &= (value.isnull() | (value != condition.value)) if condition.negate else (
                value == condition.value
            )  # fmt: skip
        return test


def parse_window(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `7d` or `2w` as a duration."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"a window is a number and s, m, h, d or w (e.g. 7d), not {text!r}",
                           field="window")  # fmt: skip
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return timedelta(**{unit[match.group(2)]: int(match.group(1))})


def _check(steps: Sequence[Step], window: timedelta) -> None:
    if not 1 <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"a funnel has 1 to {MAX_STEPS} steps", field="steps")
    if window <= timedelta(0):
        raise InvalidInput("the window must be positive", field="window")


def funnel_users(
    events: ir.Table,
    steps: Sequence[Step],
    window: timedelta,
    breakdown: str | None = None,
) -> ir.Table:
    """One row per user who did step 1: `level` (the last step reached), `seconds_k` (time
    to convert to step k, k >= 2, null when not reached) and `breakdown` when asked."""
    _check(steps, window)
    window_us = int(window / timedelta(microseconds=1))
    parts = []
    for number, step in enumerate(steps, start=1):
        matched = events.filter(step.matches(events))
        columns = {USER: matched[USER], "ts": epoch_micros(matched.timestamp),
                   "step": ibis.literal(number, "int64")}  # fmt: skip
        if breakdown:
            columns["breakdown"] = event_field(matched, breakdown)
        parts.append(matched.select(**columns))
    entries = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    upto = ibis.window(group_by=USER, order_by=["ts", "step"], rows=(None, 0))
    entries = entries.mutate(s1=ibis.ifelse(entries.step == 1, entries.ts, ibis.null("int64")))
    for k in range(2, len(steps) + 1):
        latest = entries[f"s{k - 1}"].max().over(upto)
        entries = entries.mutate(
            **{f"s{k}": ibis.ifelse(entries.step == k, latest, ibis.null("int64"))}
        )
    spans = {
        k: ibis.ifelse(
            (entries.step == k) & (entries.ts - entries[f"s{k}"] <= window_us),
            entries.ts - entries[f"s{k}"],
            ibis.null("int64"),
        )
        for k in range(1, len(steps) + 1)
    }
    aggregates: dict[str, ir.Value] = {
        "level": ibis.cases(*[(spans[k].notnull(), k) for k in spans], else_=0).max()
    }
    for k in range(2, len(steps) + 1):
        aggregates[f"seconds_{k}"] = spans[k].min() / 1e6
    if breakdown:
        aggregates["breakdown"] = entries.breakdown.argmin(entries.ts, where=entries.step == 1)
    users = entries.group_by(USER).aggregate(**aggregates)
    return users.filter(users.level >= 1)


def funnel(
    events: ir.Table,
    steps: Sequence[Step],
    window: timedelta,
    breakdown: str | None = None,
) -> ir.Table:
    """Per step (and breakdown value): `users` who reached it, `conversion_from_first`,
    `conversion_from_previous`, `median_seconds` and `p90_seconds` to convert."""
    users = funnel_users(events, steps, window, breakdown)
    keys = ["breakdown"] if breakdown else []
    wide: dict[str, ir.Value] = {}
    for k in range(1, len(steps) + 1):
        wide[f"users_{k}"] = (users.level >= k).sum()
        if k >= 2:
            seconds = users[f"seconds_{k}"]
            wide[f"median_{k}"] = seconds.quantile(0.5)
            wide[f"p90_{k}"] = seconds.quantile(0.9)
    summary = users.group_by(keys).aggregate(**wide) if keys else users.aggregate(**wide)
    numbers = ibis.memtable({"step": list(range(1, len(steps) + 1)),
                             "step_name": [s.name for s in steps]})  # fmt: skip
    rows = summary.cross_join(numbers)

    def pick(prefix: str, offset: int = 0) -> ir.Value:
        cases = [
            (rows.step == k, rows[f"{prefix}_{k - offset}"])
            for k in range(1 + offset, len(steps) + 1)
            if f"{prefix}_{k - offset}" in rows.columns
        ]
        return ibis.cases(*cases, else_=ibis.null("float64")) if cases else ibis.null("float64")

    reached = pick("users").cast("int64")
    previous = pick("users", offset=1)
    first = rows.users_1
    out = rows.mutate(
        users=reached,
        conversion_from_first=ibis.ifelse(first > 0, reached / first, ibis.null("float64")),
        conversion_from_previous=ibis.cases(
            (rows.step == 1, ibis.ifelse(first > 0, 1.0, ibis.null("float64"))),
            (previous > 0, reached / previous),
            else_=ibis.null("float64"),
        ),
        median_seconds=pick("median"),
        p90_seconds=pick("p90"),
    )
    columns = [*keys, "step", "step_name", "users", "conversion_from_first",
               "conversion_from_previous", "median_seconds", "p90_seconds"]  # fmt: skip
    return out.select(columns).order_by([*keys, "step"])


def dropped_after(
    events: ir.Table, steps: Sequence[Step], window: timedelta, step: int
) -> ir.Table:
    """The users who reached step `step` but not the next one (an audience to win back)."""
    if not 1 <= step < len(steps):
        raise InvalidInput(f"dropped-after takes a step from 1 to {len(steps) - 1}", field="step")
    users = funnel_users(events, steps, window)
    return users.filter(users.level == step).select(USER, "level").order_by(USER)
