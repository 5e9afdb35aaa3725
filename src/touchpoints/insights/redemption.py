"""Coupon redemption, from the event log: who used their code, and what each arm bought.

Inputs are Ibis tables, so this runs unchanged on DuckDB and Spark: an offer's
`offer_assignments` rows (one per person: arm `offer` or `holdout`, the code given), its
`coupons` (owner, expiry) and the events with their customer (`insights.frame.user_events`).

An *order* is a track event `Order Completed` (Segment e-commerce spec); its revenue is the
event's `revenue` (0 when missing) and its code the `coupon` property, compared trimmed and
upper-cased (codes are stored upper-case). For each use of one of the offer's codes:

- `redemption`: by the code's owner, at or after it was given and at or before it expired;
- `expired`: by the owner after the expiry;
- `early`: by the owner before it was given (a clock or identity mix-up);
- `not_owner`: by anyone else (a shared or leaked code), or a pool code never given out.

Only redemptions make a person a *redeemer*. Orders and revenue per person count every
order of the person in `[assigned_at, assigned_at + window_days)`, with or without a code,
in both arms alike, so the arms compare what the offer changed in spending.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.insights.frame import USER
from touchpoints.warehouse.functions import epoch_micros, json_text

ORDER_EVENT = "Order Completed"
USES = ("redemption", "expired", "early", "not_owner")
_DAY_US = 86_400_000_000


def orders(events: ir.Table, order_event: str = ORDER_EVENT) -> ir.Table:
    """Orders as (`customer_id`, `_ts` in epoch µs, `revenue`, `coupon` normalised)."""
    found = events.filter((events.type == "track") & (events.event == order_event))
    return found.select(
        found[USER],
        _ts=epoch_micros(found.timestamp),
        revenue=found.revenue.cast("float64").fill_null(0.0),
        coupon=json_text(found.properties, "coupon").strip().upper(),
    )


def coupon_uses(coupons: ir.Table, orders_: ir.Table) -> ir.Table:
    """Each order carrying one of `coupons`' codes: `code`, `owner`, the buyer
    (`customer_id`), `_ts`, `revenue` and `use` (see the module docstring)."""
    owned = coupons.select(
        code=coupons.code,
        owner=coupons.customer_id,
        _from=epoch_micros(coupons.assigned_at),
        _until=epoch_micros(coupons.expires_at),
    )
    used = orders_.filter(orders_.coupon.notnull())
    joined = used.inner_join(owned, used.coupon == owned.code)
    mine = joined.owner.notnull() & (joined[USER] == joined.owner)
    use = ibis.cases(
        (~mine, "not_owner"),
        (joined._ts < joined._from, "early"),
        (joined._ts > joined._until, "expired"),
        else_="redemption",
    )
    return joined.select("code", "owner", USER, "_ts", "revenue", use=use)


def person_outcomes(
    assignments: ir.Table, coupons: ir.Table, events: ir.Table, window_days: int,
    order_event: str = ORDER_EVENT,
) -> ir.Table:  # fmt: skip
    """One row per assigned person: `customer_id`, `arm`, `code`, `redeemed` (0/1),
    `redemptions` (orders using their code in time), `orders` and `revenue` within
    `window_days` of the assignment."""
    bought = orders(events, order_event)
    people = assignments.select(USER, "arm", "code", _at=epoch_micros(assignments.assigned_at))
    joined = people.inner_join(bought, USER)
    within = joined.filter(
        (joined._ts >= joined._at) & (joined._ts < joined._at + window_days * _DAY_US)
    )
    spent = within.group_by(USER).agg(orders=within.count(), revenue=within.revenue.sum())
    uses = coupon_uses(coupons, bought)
    good = uses.filter(uses.use == "redemption")
    redeemed = good.group_by(USER).agg(redemptions=good.count())
    out = people.left_join(spent, USER).left_join(redeemed, USER)
    return out.select(
        out[USER],
        out.arm,
        out.code,
        redeemed=(out.redemptions.fill_null(0) > 0).cast("int64"),
        redemptions=out.redemptions.fill_null(0).cast("int64"),
        orders=out.orders.fill_null(0).cast("int64"),
        revenue=out.revenue.fill_null(0.0).cast("float64"),
    )


def arm_summary(outcomes: ir.Table) -> ir.Table:
    """Per arm: `people`, `redeemers`, `redemption_rate`, `orders`, `revenue`,
    `orders_per_person`, `revenue_per_person` (from `person_outcomes`)."""
    grouped = outcomes.group_by("arm").agg(
        people=outcomes.count(),
        redeemers=outcomes.redeemed.sum(),
        orders=outcomes.orders.sum(),
        revenue=outcomes.revenue.sum(),
    )
    people = grouped.people.cast("float64")
    return grouped.mutate(
        redemption_rate=grouped.redeemers.cast("float64") / people,
        orders_per_person=grouped.orders.cast("float64") / people,
        revenue_per_person=grouped.revenue / people,
    ).order_by(ibis.desc("arm"))


def use_counts(uses: ir.Table) -> ir.Table:
    """Code uses by kind: `use`, `orders`, `codes` (distinct), `revenue`."""
    return uses.group_by("use").agg(
        orders=uses.count(), codes=uses.code.nunique(), revenue=uses.revenue.sum()
    )
