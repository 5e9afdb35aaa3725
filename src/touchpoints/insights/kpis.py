"""Campaign KPIs (spend joined with sessions) and customer retention per period.

`campaign_kpis` puts the `spend` table next to the sessions of `sessions(sessionize(...))`,
per group and period. A group is the session's default channel group against
`spend.channel` (`by="channel"`), or its landing UTM campaign against `spend.campaign`
(`by="campaign"`); a missing campaign on either side is the group `(not set)`. A session
belongs to the period of its start, a spend row to that of its date. The two sides are
fully outer-joined, so a group with spend but no sessions, or sessions but no spend,
still has its row. An *order* is a conversion as `sessions` counts them (its
`conversions` argument); revenue is that of the conversions. Per group and period:

- `impressions`, `clicks`, `cost`: sums over the spend rows (null when the group has no
  spend row, or none reports the measure); costs and revenue are taken to be in one
  currency.
- `sessions`, `conversions`, `revenue`: counts and sums over the sessions (0 without any).
- `new_customers`: users whose *first order* is in a session of the group and period: the
  user's first session with `conversions > 0` (lowest `session_number`) in `sessions`,
  unless `first_orders` (`USER`, `first_order`: see `first_orders`) says the user's first
  order came before that session started (the customer was acquired before the scope).
- `ctr` = clicks / impressions; `conversion_rate` = conversions / sessions;
  `cpa` = cost / conversions; `cac` = cost / new_customers; `aov` = revenue / conversions;
  `roas` = revenue / cost; `roi` = (revenue - cost) / cost.

Every ratio is null when its denominator is 0 or null: never an error or infinity.

`customer_retention` counts customers, users with at least one order event, per period
(see its docstring for the formula and why `retained` is there too).
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Period, period_calendar, period_index, period_start
from touchpoints.insights.sessions import DEFAULT_CONVERSIONS

#: The sessions' column matched against the spend table's column of the same name as `by`.
GROUPINGS = {"channel": "channel_group", "campaign": "utm_campaign"}
NOT_SET = "(not set)"
KPI_COLUMNS = ("impressions", "clicks", "ctr", "sessions", "conversions", "conversion_rate",
               "cost", "cpa", "new_customers", "cac", "revenue", "aov", "roas", "roi")  # fmt: skip
RETENTION_COLUMNS = ("period", "customers_start", "customers_end", "new_customers",
                     "retained", "resurrected", "retention_rate", "churn_rate")  # fmt: skip


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """`numerator / denominator` as a float; null when the denominator is 0 or null."""
    return numerator.cast("float64") / denominator.cast("float64").nullif(0.0)


def _period(period: Period | str, allowed: Sequence[Period] = tuple(Period)) -> Period:
    for chosen in allowed:
        if period == chosen.value:
            return chosen
    names = ", ".join(p.value for p in allowed)
    raise InvalidInput(f"the period is one of {names}, not {period!r}", field="period")


def first_orders(events: ir.Table, conversions: Sequence[str] = DEFAULT_CONVERSIONS) -> ir.Table:
    """Each user's first order (`USER`, `first_order`): the time of their first track
    event named in `conversions`. Pass it the unscoped events so that customers acquired
    before a report's range are not counted as new in it."""
    orders = events.filter((events.type == "track") & events.event.isin(list(conversions)))
    return orders.group_by(USER).aggregate(first_order=orders.timestamp.min())


def campaign_kpis(
    sessions: ir.Table,
    spend: ir.Table,
    by: str = "channel",
    period: Period | str = Period.all,
    first_orders: ir.Table | None = None,
) -> ir.Table:
    """Impressions, clicks, CTR, sessions, conversions, conversion rate, cost, CPA, new
    customers, CAC, revenue, AOV, ROAS and ROI per channel group or campaign (`by`) and
    period (definitions in the module docstring). Columns: `by`'s name, `period` (the
    first day; 1970-01-01 for `all`), then `KPI_COLUMNS`."""
    if by not in GROUPINGS:
        raise InvalidInput(f"by is one of {', '.join(GROUPINGS)}, not {by!r}", field="by")
    period = _period(period)
    s = sessions
    converting = ibis.ifelse(s.conversions > 0, s.session_number, ibis.null("int64"))
    s = s.mutate(_first_conv=converting.min().over(ibis.window(group_by=USER)))
    if first_orders is not None:
        known = first_orders.select(_user=first_orders[USER], _first_order=first_orders.first_order)
        s = s.left_join(known, s[USER] == known._user).drop("_user")
        acquired_here = s._first_order.isnull() | (s.start <= s._first_order)
    else:
        acquired_here = ibis.literal(True)
    is_new = (s.session_number == s._first_conv).fill_null(False) & acquired_here
    s = s.mutate(
        _key=s[GROUPINGS[by]].cast("string").fill_null(NOT_SET),
        _period=period_start(s.start, period),
        _new=is_new.cast("int64"),
    )
    visits = s.group_by(["_key", "_period"]).aggregate(
        sessions=s.count(),
        conversions=s.conversions.sum(),
        revenue=s.revenue.sum(),
        new_customers=s._new.sum(),
    )
    p = spend.mutate(
        _spend_key=spend[by].cast("string").fill_null(NOT_SET),
        _spend_period=period_start(spend.date.cast("timestamp"), period),
    )
    paid = p.group_by(["_spend_key", "_spend_period"]).aggregate(
        impressions=p.impressions.sum(), clicks=p.clicks.sum(), cost=p.cost.sum()
    )
    j = visits.outer_join(
        paid, [visits._key == paid._spend_key, visits._period == paid._spend_period]
    )
    out = j.select(
        _key=ibis.coalesce(j._key, j._spend_key),
        period=ibis.coalesce(j._period, j._spend_period),
        impressions=j.impressions,
        clicks=j.clicks,
        cost=j.cost,
        sessions=j.sessions.fill_null(0),
        conversions=j.conversions.fill_null(0),
        revenue=j.revenue.fill_null(0.0),
        new_customers=j.new_customers.fill_null(0),
    )
    out = out.mutate(
        ctr=ratio(out.clicks, out.impressions),
        conversion_rate=ratio(out.conversions, out.sessions),
        cpa=ratio(out.cost, out.conversions),
        cac=ratio(out.cost, out.new_customers),
        aov=ratio(out.revenue, out.conversions),
        roas=ratio(out.revenue, out.cost),
        roi=ratio(out.revenue - out.cost, out.cost),
    )
    out = out.rename({by: "_key"})
    return out.select(by, "period", *KPI_COLUMNS).order_by(["period", by])


def customer_retention(
    events: ir.Table,
    period: Period | str = Period.month,
    order_event: str = "Order Completed",
) -> ir.Table:
    """Customers per period. A customer is a user with at least one `order_event`; a
    customer is *active* in a period when they order in it. Per period (its first day),
    from the first period with an order to the last period of `events`:

    - `customers_start`: customers active in the previous period;
    - `customers_end`: customers active in this period;
    - `new_customers`: customers whose first order in `events` is in this period;
    - `retained`: customers active both in the previous period and in this one;
    - `resurrected`: customers active in this period, not in the previous one, and not
      new (they come back after a pause): `customers_end - new_customers - retained`;
    - `retention_rate` = (customers_end - new_customers) / customers_start, the usual
      formula, which counts resurrected customers as retained (so it can exceed 1);
      `retained / customers_start` is the strict share;
    - `churn_rate` = 1 - retention_rate.

    Both rates are null when `customers_start` is 0."""
    period = _period(period, (Period.day, Period.week, Period.month))
    orders = events.filter((events.type == "track") & (events.event == order_event))
    active = orders.select(USER, _period=period_start(orders.timestamp, period)).distinct()
    active = active.mutate(_index=period_index(active._period, period))
    firsts = active.group_by(USER).aggregate(_first=active._index.min())
    prev = active.select(_user=active[USER], _next=active._index + 1)
    a = active.join(firsts, USER).left_join(
        prev, (active[USER] == prev._user) & (active._index == prev._next)
    )
    ends = a.group_by(_end_index=a._index).aggregate(
        customers_end=a.count(),
        new_customers=(a._index == a._first).cast("int64").sum(),
        retained=a._user.notnull().cast("int64").sum(),
    )
    starts = active.group_by(_start_index=active._index + 1).aggregate(
        customers_start=active.count()
    )
    bounds = active.aggregate(_lo=active._period.min()).cross_join(
        events.aggregate(_hi=period_start(events.timestamp.max(), period))
    )
    calendar = period_calendar(bounds, period)
    j = calendar.left_join(ends, calendar._index == ends._end_index).left_join(
        starts, calendar._index == starts._start_index
    )
    out = j.select(
        "period",
        customers_start=j.customers_start.fill_null(0),
        customers_end=j.customers_end.fill_null(0),
        new_customers=j.new_customers.fill_null(0),
        retained=j.retained.fill_null(0),
    )
    out = out.mutate(
        resurrected=out.customers_end - out.new_customers - out.retained,
        retention_rate=ratio(out.customers_end - out.new_customers, out.customers_start),
    )
    out = out.mutate(churn_rate=1.0 - out.retention_rate)
    return out.select(*RETENTION_COLUMNS).order_by("period")
