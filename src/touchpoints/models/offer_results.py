"""What an offer achieved: redemption per arm and the revenue it added over the holdout.

The per-person outcomes come from `insights.redemption` (orders and revenue in the
`window_days` after each person's assignment, coupon uses classified). The statistics:

- redemption rate = redeemers / people, per arm (the holdout has no code, so 0 there);
- incremental revenue = (mean revenue per person in the offer arm − in the holdout) ×
  people in the offer arm: what the offer arm spent beyond what it would have spent
  without the offer, if the holdout is a fair picture of it (assignment is random);
- its 95% interval: Welch's t interval of the difference of mean per-person revenue
  (unequal variances; Welch–Satterthwaite degrees of freedom), times the same count; the
  p-value is Welch's two-sided t-test (`scipy.stats.ttest_ind(equal_var=False)`).

Discounts given are not subtracted: the revenue is what the events report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.insights.frame import Scope, user_events
from touchpoints.insights.redemption import USES, coupon_uses, orders, person_outcomes
from touchpoints.insights.reports import Option, Report, ReportResult, text, whole
from touchpoints.warehouse.connection import Warehouse

ARMS = ("offer", "holdout")
DEFAULT_WINDOW = 30


@dataclass(frozen=True)
class Incremental:
    """Incremental revenue of the offer arm over the holdout, with its interval."""

    difference: float  # revenue per person, offer − holdout
    incremental_revenue: float
    low: float
    high: float
    p_value: float
    df: float


def incremental_revenue(
    offer: Sequence[float], holdout: Sequence[float], confidence: float = 0.95
) -> Incremental:
    """Incremental revenue = (mean(offer) − mean(holdout)) × len(offer), with a Welch t
    interval (see the module docstring); NaN bounds when an arm has fewer than 2 people."""
    a, b = np.asarray(offer, dtype=float), np.asarray(holdout, dtype=float)
    if len(a) == 0 or len(b) == 0:
        nan = math.nan
        return Incremental(nan, nan, nan, nan, nan, nan)
    difference = float(a.mean() - b.mean())
    n = len(a)
    if len(a) < 2 or len(b) < 2:
        return Incremental(difference, difference * n, math.nan, math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Incremental(difference, difference * n, difference * n, difference * n,
                           1.0 if difference == 0 else 0.0, math.inf)  # fmt: skip
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Incremental(difference, difference * n, (difference - half) * n,
                       (difference + half) * n, p_value, float(df))  # fmt: skip


def offer_results(
    warehouse: Warehouse, offer_id: str, window_days: int = DEFAULT_WINDOW
) -> dict[str, Any]:
    """An offer's results: `arms` (people, redeemers, rates, orders and revenue per
    person), `uses` (code uses by kind, see `insights.redemption`) and `incremental`
    (revenue over the holdout, interval, p-value)."""
    if not isinstance(window_days, int) or not 1 <= window_days <= 3650:
        raise InvalidInput("window_days is a whole number from 1 to 3650", field="window_days")
    offers = warehouse.table("offers")
    if not offers.filter(offers.offer_id == offer_id).count().to_pyarrow().as_py():
        raise NotFound(f"there is no offer {offer_id!r}", field="offer_id")
    assignments = warehouse.table("offer_assignments")
    assignments = assignments.filter(assignments.offer_id == offer_id)
    coupons = warehouse.table("coupons")
    coupons = coupons.filter(coupons.offer_id == offer_id)
    events = user_events(warehouse, Scope())
    people = person_outcomes(assignments, coupons, events, window_days).to_pandas()
    uses = coupon_uses(coupons, orders(events))
    counted = uses.group_by("use").agg(orders=uses.count()).to_pyarrow().to_pylist()
    by_use = {u: 0 for u in USES} | {r["use"]: int(r["orders"]) for r in counted}
    revenue = {arm: people.loc[people["arm"] == arm, "revenue"].to_numpy() for arm in ARMS}
    found = incremental_revenue(revenue["offer"], revenue["holdout"])
    arms = []
    for arm in ARMS:  # what `insights.redemption.arm_summary` computes, from the same rows
        mine = people[people["arm"] == arm]
        n, redeemers = len(mine), int(mine["redeemed"].sum())
        bought, spent = int(mine["orders"].sum()), float(mine["revenue"].sum())
        arms.append({
            "arm": arm, "people": n, "redeemers": redeemers,
            "redemption_rate": _share(redeemers, n), "orders": bought, "revenue": spent,
            "orders_per_person": _share(bought, n), "revenue_per_person": _share(spent, n),
        })  # fmt: skip
    return {
        "offer_id": offer_id,
        "window_days": window_days,
        "arms": arms,
        "uses": by_use,
        "incremental": {k: _clean(v) for k, v in found.__dict__.items()},
    }


def _share(part: float, whole_: int) -> float | None:
    return float(part) / whole_ if whole_ else None


def _clean(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def _offer(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ReportResult:
    if scope.start or scope.end or scope.where:
        raise InvalidInput("the offer report takes no from, to or where", field="from")
    found = offer_results(warehouse, options["offer_id"], options["window_days"])
    extra = {f"incremental_{k}" if k in ("low", "high") else k: v
             for k, v in found["incremental"].items()}  # fmt: skip
    rows = [{**arm, **extra, **{f"uses_{k}": v for k, v in found["uses"].items()}}
            for arm in found["arms"]]  # fmt: skip
    return ReportResult(list(rows[0]), rows)


REPORTS: dict[str, Report] = {
    "offer": Report(
        "offer",
        "an offer's redemption per arm and its incremental revenue over the holdout",
        _offer,
        {
            "offer_id": Option(text, required=True, help="the offer"),
            "window_days": Option(whole(1, 3650), DEFAULT_WINDOW,
                                  help="days after assignment whose orders count"),
        },
    ),
}  # fmt: skip
