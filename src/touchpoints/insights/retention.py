"""Retention by cohort, and the lifecycle of users, per period.

Periods are UTC days, ISO weeks (Monday 00:00 to Sunday 23:59:59.999999) or calendar
months (`frame.period_start`); period N after period c is the one whose
`frame.period_index` is c + N. The *last period* is the period of the latest event in
the `events` passed in (usually still in progress).

`retention`. A user's *cohort* is the period of their first event, or of their first
`start_event` when one is given (users who never did it are in no cohort). A user
*returns* in a period when they have a *return event* in it: any event, or a
`return_event` when one is given. Only periods count, not times within them: a return
event in the cohort period counts for N = 0 even if it came before the start event, and
return events in periods before the cohort are ignored. For each cohort and each N from
0 to `periods` whose period cohort+N is not after the last period:

- `users_classic`: users of the cohort who return in period cohort+N itself;
- `users_unbounded`: users of the cohort who return in period cohort+N or any later one
  (so it never grows with N, and is never below `users_classic`);
- `rate_classic`, `rate_unbounded`: those counts divided by `cohort_size`.

Every such cell has its row, with 0 users when nobody of the cohort returned in it (a
user with no return event in period cohort+N counts in the unbounded cell as long as
they return later). Cells after the last period have no row: they have not happened
yet. Without a `return_event` every user returns in their cohort period, so both rates
at N = 0 are 1.0; with one, the N = 0 cell is the share who did it in the cohort period.

`lifecycle`. A user is *active* in a period when they have any event in it. For every
period from the first with an event to the last period (periods in between where nobody
was active included), the number of users who are:

- `new`: active, and it is their first active period in `events`;
- `returning`: active in it and in the previous period;
- `resurrected`: active in it, not in the previous period, but in some earlier one;
- `dormant`: active in the previous period, not in this one.

So new + returning + resurrected is the period's active users, and returning + dormant
the previous period's. The period after the last period is not reported: its dormant
count would be everyone active in the last period, which is not over yet.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Period, period_calendar, period_index, period_start
from touchpoints.insights.funnels import Step

RETENTION_COLUMNS = ("cohort", "cohort_size", "period_number", "users_classic",
                     "rate_classic", "users_unbounded", "rate_unbounded")  # fmt: skip
LIFECYCLE_COLUMNS = ("period", "new", "returning", "resurrected", "dormant")


def _period(period: Period | str) -> Period:
    try:
        chosen = Period(period)
    except ValueError:
        chosen = Period.all
    if chosen is Period.all:
        raise InvalidInput(f"the period is day, week or month, not {period!r}", field="period")
    return chosen


def _with_periods(events: ir.Table, period: Period) -> ir.Table:
    day = period_start(events.timestamp, period)
    return events.mutate(_day=day, _p=period_index(day, period))


def _matches(events: ir.Table, step: Step | str | None) -> ir.BooleanValue:
    """Whether each event matches a step (`Order Completed`, `page:/pricing`,
    `Signed Up[plan=pro]`); every event does when there is none."""
    if step is None:
        return ibis.literal(True)
    return (step if isinstance(step, Step) else Step.parse(step)).matches(events)


def _count(table: ir.Table, condition: ir.BooleanValue) -> ir.IntegerScalar:
    """The rows where `condition` holds, 0 when there are none: on Spark, ibis counts
    with `SUM(CAST(condition AS BIGINT))`, which is NULL when the condition is NULL on
    every row, so a NULL condition is made false first."""
    return table.count(where=condition.fill_null(False))


def retention(
    events: ir.Table,
    period: Period | str = Period.week,
    start_event: Step | str | None = None,
    return_event: Step | str | None = None,
    periods: int = 12,
) -> ir.Table:
    """Retention per cohort and period number, classic and unbounded (see the module
    docstring). Columns: `RETENTION_COLUMNS`, ordered by cohort and period number."""
    period = _period(period)
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 0:
        raise InvalidInput(f"periods is a whole number >= 0, not {periods!r}", field="periods")
    t = _with_periods(events, period)
    # One row per user and period with an event: did they start / return in it?
    u = t.group_by([USER, "_p"]).aggregate(
        _day=t._day.min(),
        _starts=_count(t, _matches(t, start_event)),
        _returns=_count(t, _matches(t, return_event)),
    )
    w = ibis.window(group_by=USER)
    u = u.mutate(
        _c=u._p.min(where=u._starts > 0).over(w),  # the cohort's period index
        _reach=u._p.max(where=u._returns > 0).over(w),  # the last period they return in
    )
    last = u.aggregate(_last=u._p.max())
    # One row per user of a cohort (their cohort period's) and period number N.
    grid = u.filter(u._p == u._c).cross_join(last)
    n = ibis.range(0, ibis.least(grid._last - grid._c, periods) + 1).unnest()
    grid = grid.mutate(_n=n.cast("int64"))
    back = u.filter(u._returns > 0).select(_user=u[USER], _back=u._p)
    j = grid.left_join(back, [grid[USER] == back._user, back._back == grid._c + grid._n])
    out = j.group_by(cohort=j._day, period_number=j._n).aggregate(
        cohort_size=lambda x: x.count(),
        users_classic=lambda x: _count(x, x._user.notnull()),
        users_unbounded=lambda x: _count(x, x._reach >= x._c + x._n),
    )
    size = out.cohort_size.cast("float64")
    out = out.mutate(
        rate_classic=out.users_classic.cast("float64") / size,
        rate_unbounded=out.users_unbounded.cast("float64") / size,
    )
    return out.select(*RETENTION_COLUMNS).order_by(["cohort", "period_number"])


def lifecycle(events: ir.Table, period: Period | str = Period.week) -> ir.Table:
    """Users new, returning, resurrected and dormant per period (see the module
    docstring). Columns: `LIFECYCLE_COLUMNS`, ordered by period."""
    period = _period(period)
    t = _with_periods(events, period)
    active = t.select(USER, "_day", "_p").distinct()
    w = ibis.window(group_by=USER, order_by="_p")
    active = active.mutate(_prev=active._p.lag().over(w), _next=active._p.lead().over(w))
    counts = active.group_by(_ap="_p").aggregate(
        new=lambda x: _count(x, x._prev.isnull()),
        returning=lambda x: _count(x, x._prev == x._p - 1),
        resurrected=lambda x: _count(x, x._prev < x._p - 1),
    )
    gone = active.filter(active._next.isnull() | (active._next > active._p + 1))
    dormant = gone.group_by(_dp=gone._p + 1).aggregate(dormant=lambda x: x.count())
    bounds = active.aggregate(_lo=active._day.min(), _hi=active._day.max())
    calendar = period_calendar(bounds, period)
    j = calendar.left_join(counts, calendar._index == counts._ap).left_join(
        dormant, calendar._index == dormant._dp
    )
    out = j.select(
        "period", **{name: j[name].fill_null(0).cast("int64") for name in LIFECYCLE_COLUMNS[1:]}
    )
    return out.order_by("period")
