"""RFM: recency, frequency and monetary value per customer, scores and named groups.

Per customer with at least one order (an `Order Completed` event) before `as_of`:

- `recency_days`: UTC calendar days from the date of the last order to the date of
  `as_of` (0 when the last order was on that day);
- `frequency`: orders (events, whatever their revenue);
- `monetary`: the sum of their `revenue` column (a missing revenue counts 0), rounded
  to cents so that every engine ranks the same sums the same way.

Scores 1-5 are position quintiles with ties kept together: among the n customers,
`score = 1 + floor(5 × worse / n)` where `worse` is how many customers have a strictly
worse value (Ibis `rank()`, SQL RANK() - 1, i.e. pandas ``rank(method="min") - 1``).
Worse means fewer orders or less money for F and M, and *more* days for R, so the most
recent customers get R = 5. With distinct values this is an even split into fifths
(an NTILE that rounds differently when n is not a multiple of 5); tied customers all get
the score of the first of them, never one each side of a boundary.

Named groups come from R and FM = round-half-up((F + M) / 2) through this grid, one
variant of the widely published R × FM tables (they differ at the boundaries; this is
the one Touchpoints uses)::

    R/FM 1               2                    3                    4                5
    5    New Customers   Potential Loyalists  Potential Loyalists  Champions        Champions
    4    Promising       Potential Loyalists  Potential Loyalists  Loyal Customers  Champions
    3    About to Sleep  About to Sleep       Need Attention       Loyal Customers  Loyal Customers
    2    Hibernating     Hibernating          At Risk              At Risk          Can't Lose Them
    1    Lost            Lost                 At Risk              Can't Lose Them  Can't Lose Them
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import ibis
import ibis.expr.types as ir

from touchpoints.insights.frame import USER, Scope, user_events
from touchpoints.warehouse import Warehouse

ORDER_EVENT = "Order Completed"
RFM_COLUMNS = ("customer_id", "recency_days", "frequency", "monetary", "r", "f", "m", "rfm",
               "segment")  # fmt: skip

#: The named group of each (R, FM) pair: GRID[r][fm - 1] (see the module docstring).
GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal Customers",
        "Champions"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal Customers",
        "Loyal Customers"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "At Risk", "Can't Lose Them", "Can't Lose Them"),
}  # fmt: skip

#: The groups, best first: the order of `rfm_summary`.
SEGMENTS = ("Champions", "Loyal Customers", "Potential Loyalists", "New Customers",
            "Promising", "Need Attention", "About to Sleep", "At Risk", "Can't Lose Them",
            "Hibernating", "Lost")  # fmt: skip


def fm_score(f: int, m: int) -> int:
    """The combined FM score: (F + M) / 2 rounded half up."""
    return (f + m + 1) // 2


def segment_name(r: int, f: int, m: int) -> str:
    """The named group of one customer's scores."""
    return GRID[r][fm_score(f, m) - 1]


def _score(worse: ir.IntegerValue, n: ir.IntegerValue) -> ir.IntegerValue:
    return ((worse * 5) // n + 1).cast("int64")


def rfm_table(events: ir.Table, as_of: datetime, order_event: str = ORDER_EVENT) -> ir.Table:
    """The RFM table (`RFM_COLUMNS`) of attributed `events` (with `USER`) at `as_of`."""
    orders = events.filter((events.event == order_event) & (events.timestamp < as_of))
    per_customer = orders.group_by(USER).agg(
        last_order=orders.timestamp.max(),
        frequency=orders.count().cast("int64"),
        monetary=ibis.coalesce(orders.revenue.sum(), 0.0).round(2).cast("float64"),
    )
    as_of_day = (as_of.astimezone(UTC).date() - date(1970, 1, 1)).days
    measured = per_customer.select(
        USER,
        "frequency",
        "monetary",
        recency_days=(as_of_day - per_customer.last_order.date().epoch_days()).cast("int64"),
    )
    n = measured.count().over()  # the customers
    scored = measured.mutate(
        r=_score(ibis.rank().over(order_by=ibis.desc(measured.recency_days)), n),
        f=_score(ibis.rank().over(order_by=measured.frequency), n),
        m=_score(ibis.rank().over(order_by=measured.monetary), n),
    )
    fm = ((scored.f + scored.m + 1) // 2).cast("int64")
    key = scored.r * 10 + fm
    groups = [
        (key.isin([r * 10 + i + 1 for r, row in GRID.items() for i, g in enumerate(row)
                   if g == name]), name)
        for name in SEGMENTS
    ]  # fmt: skip
    return scored.select(
        USER,
        "recency_days",
        "frequency",
        "monetary",
        "r",
        "f",
        "m",
        rfm=scored.r.cast("string") + scored.f.cast("string") + scored.m.cast("string"),
        segment=ibis.cases(*groups),
    )


def rfm(
    warehouse: Warehouse,
    as_of: datetime | None = None,
    scope: Scope = Scope(),
    *,
    order_event: str = ORDER_EVENT,
) -> ir.Table:
    """The RFM table of the warehouse's customers at `as_of` (default now, UTC), from the
    events in `scope`."""
    moment = datetime.now(UTC) if as_of is None else as_of
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return rfm_table(user_events(warehouse, scope), moment, order_event)


def rfm_summary(table: ir.Table) -> ir.Table:
    """Per named group, best first, every group present: `customers`, `share` of all
    customers, `revenue` (sum of `monetary`) and `revenue_share` (null without revenue)."""
    per_group = table.group_by("segment").agg(
        customers=table.count().cast("int64"), revenue=table.monetary.sum()
    )
    order = ibis.memtable({"segment": list(SEGMENTS), "_order": list(range(len(SEGMENTS)))})
    joined = order.left_join(per_group, order.segment == per_group.segment)
    filled = joined.select(
        order.segment,
        order._order,
        customers=ibis.coalesce(per_group.customers, 0),
        revenue=ibis.coalesce(per_group.revenue, 0.0),
    )
    total = filled.customers.sum().over()
    money = filled.revenue.sum().over()
    return (
        filled.mutate(
            share=ibis.ifelse(total > 0, filled.customers / total, 0.0),
            revenue_share=ibis.ifelse(money > 0, filled.revenue / money, ibis.null("float64")),
        )
        .order_by("_order")
        .select("segment", "customers", "share", "revenue", "revenue_share")
    )
