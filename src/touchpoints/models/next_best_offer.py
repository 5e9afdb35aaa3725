"""Next best offer: for each customer, the active offer worth most to them, in money.

Each active offer is one of three kinds, by its definition:

- *retention* (`min_churn_risk` set): eligible when the customer's churn risk is at least
  that; worth churn risk × predicted CLV, the value expected to be lost without action
  (risk from `churn_service.current_risk`, CLV from BG/NBD + Gamma-Gamma over 12 months);
- *product* (`product_id` or `category`): eligible when the customer has a purchase
  probability for the product (not bought already) or some product of the category; worth
  P(buy) × the customer's expected order value (Gamma-Gamma, else the mean order value of
  everyone). P(buy) is the calibrated ALS probability of buying within the horizon
  (`recommend_eval.next_best_offer`); for a category, that of its likeliest product;
- *general* (neither): always eligible, worth 0, so it is chosen only when nothing else is.

Every kind also needs: the customer in the offer's `audience` (a current member) when it
names one, a CLV of at least `min_clv` when set, the offer not already decided for them
(either arm), and a pool offer to have free codes. The eligible offer of highest worth
wins; ties go to the higher `priority`, then the offer id. The answer lists every offer
considered, with its worth or the reason it was left out.

The scores can be passed in (`Scores`), computed elsewhere or planted in a test; without
them `model_scores` fits only the models the active offers need, once per state of the data.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.identity.resolve import WATERMARK
from touchpoints.insights.frame import Scope, user_events
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

DEFAULT_HORIZON_DAYS = 90
PRODUCT_EVENTS = ("Product Viewed", "Product Added", "Product Clicked")


@dataclass(frozen=True)
class Scores:
    """What the choice reads, per customer id (Series indexed by it): `churn_risk` (0..1),
    `clv` (predicted value), `order_value` (expected value of an order); `purchase` rows of
    (`customer_id`, `item_id`, `probability`) for products not yet bought; `categories`
    (item id → category). `missing` names models that could not be fitted, and why."""

    churn_risk: pd.Series | None = None
    clv: pd.Series | None = None
    order_value: pd.Series | None = None
    purchase: pd.DataFrame | None = None
    categories: pd.Series | None = None
    default_order_value: float = 0.0
    missing: Mapping[str, str] = field(default_factory=dict)


def kind(offer: Mapping[str, Any]) -> str:
    """`retention`, `product` or `general` (see the module docstring)."""
    if offer.get("min_churn_risk") is not None:
        return "retention"
    if offer.get("product_id") or offer.get("category"):
        return "product"
    return "general"


def choose(
    offers: Sequence[Mapping[str, Any]],
    customer_ids: Sequence[str],
    scores: Scores,
    *,
    members: Mapping[str, set[str]] | None = None,
    decided: set[tuple[str, str]] | None = None,
    exhausted: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The best offer per customer (see the module docstring): `customer_id`, `offer_id`
    (None when no offer is eligible), `name`, `kind`, `value` and `candidates`.
    `members` maps an audience to its current members, `decided` holds (offer, customer)
    pairs already assigned, `exhausted` the pool offers without free codes."""
    members, decided, exhausted = members or {}, decided or set(), exhausted or set()
    purchase = _purchase_lookup(scores)
    out = []
    for customer in customer_ids:
        candidates = []
        for offer in offers:
            if not offer.get("active", True):
                continue
            value, reason = _worth(offer, customer, scores, purchase)
            audience = offer.get("audience")
            if audience and customer not in members.get(audience, set()):
                reason = f"not in audience {audience!r}"
            elif (offer["offer_id"], customer) in decided:
                reason = "already decided for this customer"
            elif offer["offer_id"] in exhausted:
                reason = "no free codes in the pool"
            candidates.append({
                "offer_id": offer["offer_id"], "kind": kind(offer),
                "priority": offer.get("priority", 0), "eligible": reason is None,
                "value": value if reason is None else None, "reason": reason,
            })  # fmt: skip
        ranked = sorted(
            (c for c in candidates if c["eligible"]),
            key=lambda c: (-c["value"], -c["priority"], c["offer_id"]),
        )
        best = ranked[0] if ranked else None
        names = {o["offer_id"]: o.get("name") for o in offers}
        out.append({
            "customer_id": customer,
            "offer_id": best["offer_id"] if best else None,
            "name": names.get(best["offer_id"]) if best else None,
            "kind": best["kind"] if best else None,
            "value": best["value"] if best else None,
            "candidates": candidates,
        })  # fmt: skip
    return out


def _purchase_lookup(scores: Scores) -> dict[str, dict[str, float]]:
    if scores.purchase is None or scores.purchase.empty:
        return {}
    table: dict[str, dict[str, float]] = {}
    for row in scores.purchase.itertuples(index=False):
        table.setdefault(str(row.customer_id), {})[str(row.item_id)] = float(row.probability)
    return table


def _get(series: pd.Series | None, customer: str) -> float | None:
    if series is None or customer not in series.index:
        return None
    value = float(series[customer])
    return None if math.isnan(value) else value


def _worth(
    offer: Mapping[str, Any], customer: str, scores: Scores, purchase: dict[str, dict[str, float]]
) -> tuple[float, str | None]:
    """(worth, None) or (0, the reason the offer is left out)."""
    found = kind(offer)
    clv = _get(scores.clv, customer)
    if offer.get("min_clv") is not None:
        if scores.clv is None:
            return 0.0, f"no CLV model: {scores.missing.get('clv', 'not computed')}"
        if (clv or 0.0) < offer["min_clv"]:
            return 0.0, f"CLV {clv or 0.0:.2f} below {offer['min_clv']:g}"
    if found == "retention":
        if scores.churn_risk is None:
            return 0.0, f"no churn model: {scores.missing.get('churn', 'not computed')}"
        risk = _get(scores.churn_risk, customer)
        if risk is None:
            return 0.0, "no churn score for this customer"
        if risk < offer["min_churn_risk"]:
            return 0.0, f"churn risk {risk:.3f} below {offer['min_churn_risk']:g}"
        return risk * (clv or 0.0), None
    if found == "product":
        if scores.purchase is None:
            return 0.0, f"no purchase model: {scores.missing.get('purchase', 'not computed')}"
        mine = purchase.get(customer, {})
        if offer.get("product_id"):
            probability = mine.get(offer["product_id"])
        else:
            cats = scores.categories if scores.categories is not None else pd.Series(dtype=str)
            items = set(cats.index[cats == offer["category"]].astype(str))
            probability = max((p for i, p in mine.items() if i in items), default=None)
        if probability is None:
            return 0.0, "no purchase probability (bought already, or unknown product)"
        order_value = _get(scores.order_value, customer)
        return probability * (scores.default_order_value if order_value is None
                              else order_value), None  # fmt: skip
    return 0.0, None


# -- from the warehouse ---------------------------------------------------------------------


def active_offers(warehouse: Warehouse) -> list[dict[str, Any]]:
    """The stored definitions of the offers that take new assignments."""
    rows = warehouse.table("offers").order_by("offer_id").definition.to_pyarrow().to_pylist()
    return [o for o in map(json.loads, rows) if o.get("active", True)]


def best_offers(
    warehouse: Warehouse,
    customer_ids: Sequence[str],
    *,
    scores: Scores | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> list[dict[str, Any]]:
    """The next best offer of each customer among the active offers (see `choose`); the
    scores are fitted on the warehouse unless given."""
    if isinstance(customer_ids, str) or not customer_ids:
        raise InvalidInput("give at least one customer id", field="customer_id")
    ids = list(dict.fromkeys(customer_ids))
    offers = active_offers(warehouse)
    if scores is None:
        scores = model_scores(warehouse, offers, ids, horizon_days)
    audiences = sorted({o["audience"] for o in offers if o.get("audience")})
    members: dict[str, set[str]] = {a: set() for a in audiences}
    if audiences:
        stays = warehouse.table("audience_members")
        now_in = stays.filter(stays.audience.isin(audiences) & stays.left_at.isnull()
                              & stays.customer_id.isin(ids))  # fmt: skip
        for row in now_in.select("audience", "customer_id").to_pyarrow().to_pylist():
            members[row["audience"]].add(row["customer_id"])
    given = warehouse.table("offer_assignments")
    mine = given.filter(given.customer_id.isin(ids)).select("offer_id", "customer_id")
    decided = {(r["offer_id"], r["customer_id"]) for r in mine.to_pyarrow().to_pylist()}
    pools = [o["offer_id"] for o in offers if "pool" in o["codes"]]
    exhausted: set[str] = set()
    if pools:
        coupons = warehouse.table("coupons")
        free = coupons.filter(coupons.offer_id.isin(pools) & coupons.customer_id.isnull())
        stocked = set(free.select("offer_id").distinct().to_pyarrow()["offer_id"].to_pylist())
        exhausted = set(pools) - stocked
    return choose(offers, ids, scores, members=members, decided=decided, exhausted=exhausted)


_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
_cache_lock = threading.Lock()


def model_scores(
    warehouse: Warehouse,
    offers: Sequence[Mapping[str, Any]],
    customer_ids: Sequence[str],
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> Scores:
    """The scores the offers need, from models fitted on the warehouse (kept until the
    events or identities change). A model that cannot be fitted (too little data) is
    named in `missing` and the offers needing it are left out, with that reason."""
    kinds = {kind(o) for o in offers}
    need_clv = bool(kinds & {"retention", "product"}) or any(
        o.get("min_clv") is not None for o in offers
    )
    fitted = _fitted(warehouse, horizon_days, churn="retention" in kinds, clv=need_clv,
                     purchase="product" in kinds)  # fmt: skip
    purchase = None
    if "purchase" in fitted:
        rows = []
        for customer in customer_ids:
            probabilities = fitted["purchase"].probabilities(customer)
            rows.extend((customer, str(i), float(p)) for i, p in probabilities.items())
        purchase = pd.DataFrame(rows, columns=["customer_id", "item_id", "probability"])
    clv = fitted.get("clv")
    return Scores(
        churn_risk=fitted.get("churn"),
        clv=None if clv is None else clv["clv"],
        order_value=None if clv is None else clv.get("expected_average_value"),
        purchase=purchase,
        categories=fitted.get("categories"),
        default_order_value=fitted.get("mean_order", 0.0),
        missing=fitted.get("missing", {}),
    )


def _fitted(
    warehouse: Warehouse, horizon_days: int, *, churn: bool, clv: bool, purchase: bool
) -> dict[str, Any]:
    from touchpoints.models.churn_service import current_risk, last_event
    from touchpoints.models.clv_data import fit_from_transactions, score_customers
    from touchpoints.models.clv_data import warehouse_transactions as transactions
    from touchpoints.models.recommend import interaction_events
    from touchpoints.models.recommend_eval import next_best_offer

    events, watermark = warehouse.count("events"), warehouse.get_meta(WATERMARK)
    version = (id(warehouse), events, watermark, horizon_days)
    with _cache_lock:
        done = _cache.setdefault(version, {"missing": {}})
        for stale in [k for k in _cache if k[0] == version[0] and k != version]:
            del _cache[stale]
    horizon = timedelta(days=horizon_days)
    steps = {
        "churn": (churn, lambda: current_risk(warehouse, horizon)["risk"]),
        "clv": (clv, lambda: score_customers(fit_from_transactions(transactions(warehouse)))),
        "purchase": (purchase, lambda: next_best_offer(
            interaction_events(warehouse), last_event(warehouse) - horizon)),
    }  # fmt: skip
    for name, (wanted, fit) in steps.items():
        if wanted and name not in done and name not in done["missing"]:
            try:
                done[name] = fit()
            except InvalidInput as exc:
                done["missing"][name] = exc.message
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                done["missing"][name] = f"the model could not be fitted: {exc}"
    if clv and "mean_order" not in done:
        try:
            done["mean_order"] = float(transactions(warehouse)["amount"].mean())
        except InvalidInput:
            done["mean_order"] = 0.0
    if purchase and "categories" not in done:
        done["categories"] = product_categories(warehouse)
    return done


def product_categories(warehouse: Warehouse) -> pd.Series:
    """Each product's category (item id → the `category` property of its latest product
    event, Segment e-commerce spec)."""
    events = user_events(warehouse, Scope())
    found = events.filter(events.event.isin(list(PRODUCT_EVENTS)))
    found = found.select(
        item_id=json_text(found.properties, "product_id"),
        category=json_text(found.properties, "category"),
        timestamp=found.timestamp,
    )
    found = found.filter(found.item_id.notnull() & found.category.notnull())
    latest = found.group_by("item_id").agg(category=found.category.argmax(found.timestamp))
    table = latest.to_pandas()
    return pd.Series(table["category"].to_numpy(), index=table["item_id"].astype(str))
