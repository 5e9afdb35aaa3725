"""How good the recommendations are, and how likely a purchase is (next best offer).

Evaluation on a time split: the models learn from every interaction before `cutoff`;
the truth is what each customer then bought in [cutoff, end). With `exclude_purchased`
(the default, as when recommending) products bought before the cutoff are neither
recommended nor counted as truth. Customers with no interaction before the cutoff are
left out (every model would answer them with the popular products); products first seen
after the cutoff stay in the truth, as misses no model could have made.

Metrics at k, averaged over the customers with at least one true product:

- precision@k = |top k ∩ truth| / k;
- recall@k = |top k ∩ truth| / |truth|;
- AP@k = Σ_{i≤k} P@i·rel_i / min(|truth|, k), and MAP@k its mean (the definition of
  Kaggle's `ml_metrics.apk`; with k = the whole catalogue it is sklearn's
  `label_ranking_average_precision_score`);
- catalogue coverage = share of the training catalogue in at least one customer's top k.

Purchase probability ("next best offer"), Platt-style: ALS is fitted on the interactions
before the cutoff; for every (customer, product not yet bought) pair a logistic
regression maps its ALS score to whether the customer bought the product in
[cutoff, end). ALS is then refitted on everything before `end` with the same settings
and the calibration applied to its scores, so a probability reads "bought within the
next `end − cutoff`". The refit keeps the hyperparameters that set the scale of the
scores, which is what the calibration relies on. Its quality is measured on customers
held out of the calibration fit: Brier score against that of the base rate, and the
area under the ROC curve of the scores.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import expit

from touchpoints.errors import InvalidInput
from touchpoints.models.recommend import (
    MODELS,
    WEIGHTS,
    ALSRecommender,
    Interactions,
    Recommendation,
    Recommender,
    check_k,
)

Ranked = Sequence[Sequence[Hashable]]
Truth = Sequence[Collection[Hashable]]


# --------------------------------------------------------------------------- metrics


def _pairs(recommended: Ranked, relevant: Truth, k: object) -> tuple[int, list[tuple]]:
    """k checked, and (top k without repeats, truth) for customers with some truth."""
    k = check_k(k)
    if len(recommended) != len(relevant):
        raise InvalidInput("recommended and relevant need one entry per customer", field="relevant")
    pairs = []
    for ranked, truth in zip(recommended, relevant, strict=True):
        if len(truth) == 0:
            continue
        top = list(dict.fromkeys(ranked))[:k]
        pairs.append((top, set(truth)))
    if not pairs:
        raise InvalidInput("no customer has a relevant product", field="relevant")
    return k, pairs


def precision_at_k(recommended: Ranked, relevant: Truth, k: int) -> float:
    """Mean share of the top k that is relevant (see the module docstring)."""
    k, pairs = _pairs(recommended, relevant, k)
    return float(np.mean([len(set(top) & truth) / k for top, truth in pairs]))


def recall_at_k(recommended: Ranked, relevant: Truth, k: int) -> float:
    """Mean share of the relevant products found in the top k."""
    k, pairs = _pairs(recommended, relevant, k)
    return float(np.mean([len(set(top) & truth) / len(truth) for top, truth in pairs]))


def average_precision_at_k(
    ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int
) -> float:
    """AP@k of one customer: precision at each hit within the top k, over min(|truth|, k)."""
    k, pairs = _pairs([ranked], [relevant], k)
    top, truth = pairs[0]
    hits, total = 0, 0.0
    for position, item in enumerate(top, start=1):
        if item in truth:
            hits += 1
            total += hits / position
    return total / min(len(truth), k)


def map_at_k(recommended: Ranked, relevant: Truth, k: int) -> float:
    """Mean AP@k over the customers with some relevant product."""
    k, pairs = _pairs(recommended, relevant, k)
    return float(np.mean([average_precision_at_k(top, truth, k) for top, truth in pairs]))


def catalogue_coverage(recommended: Ranked, catalogue: Collection[Hashable], k: int) -> float:
    """Share of the catalogue that appears in at least one customer's top k."""
    k = check_k(k)
    if len(catalogue) == 0:
        raise InvalidInput("the catalogue is empty", field="catalogue")
    shown = {item for ranked in recommended for item in list(ranked)[:k]}
    return len(shown & set(catalogue)) / len(set(catalogue))


# --------------------------------------------------------------------------- time split


@dataclass(frozen=True)
class TimeSplit:
    """Training interactions before the cutoff and each evaluated customer's truth."""

    train: Interactions
    rows: NDArray[np.int64]
    relevant: list[set[str]]
    cutoff: pd.Timestamp
    end: pd.Timestamp


def time_split(
    events: pd.DataFrame,
    cutoff: datetime | str,
    *,
    end: datetime | str | None = None,
    weights: Mapping[str, float] = WEIGHTS,
    exclude_purchased: bool = True,
) -> TimeSplit:
    """Split `interaction_events` rows at `cutoff` (see the module docstring)."""
    if events.empty:
        raise InvalidInput("there are no product interactions", field="events")
    at = _utc(cutoff, "cutoff")
    stop = events["timestamp"].max() + pd.Timedelta(1, "us") if end is None else _utc(end, "end")
    if stop <= at:
        raise InvalidInput("end must come after the cutoff", field="end")
    before = events[events["timestamp"] < at]
    if before.empty:
        raise InvalidInput("no interaction falls before the cutoff", field="cutoff")
    train = Interactions.from_events(before, weights)
    after = events[(events["timestamp"] >= at) & (events["timestamp"] < stop)]
    bought = after[after["kind"] == "purchase"]
    truth = bought.groupby("customer_id")["item_id"].agg(set)
    rows, relevant = [], []
    for customer, items in truth.items():
        row = train.user_index.get(customer)
        if row is None:
            continue
        if exclude_purchased:
            owned = train.items[train.purchased[row].indices]
            items = items - set(owned)
        if items:
            rows.append(row)
            relevant.append(items)
    return TimeSplit(train, np.array(rows, dtype=np.int64), relevant, at, stop)


def evaluate(
    events: pd.DataFrame,
    cutoff: datetime | str,
    *,
    end: datetime | str | None = None,
    k: int = 10,
    models: Mapping[str, Recommender] | None = None,
    weights: Mapping[str, float] = WEIGHTS,
    exclude_purchased: bool = True,
) -> pd.DataFrame:
    """Precision, recall, MAP and coverage at k of each model (default: ALS,
    co-occurrence and popularity, side by side), fitted before `cutoff`, on the
    purchases in [cutoff, end). One row per model."""
    k = check_k(k)
    split = time_split(
        events, cutoff, end=end, weights=weights, exclude_purchased=exclude_purchased
    )
    if len(split.rows) == 0:
        raise InvalidInput(
            "no known customer bought a new product after the cutoff", field="cutoff"
        )
    models = models or {name: factory() for name, factory in MODELS.items()}
    results = []
    for name, model in models.items():
        model.fit(split.train)
        top = model.top_items(split.rows, k, exclude_purchased=exclude_purchased)
        ranked = [[split.train.items[j] for j in row if j >= 0] for row in top]
        results.append(
            {
                "model": name,
                f"precision@{k}": precision_at_k(ranked, split.relevant, k),
                f"recall@{k}": recall_at_k(ranked, split.relevant, k),
                f"map@{k}": map_at_k(ranked, split.relevant, k),
                "coverage": catalogue_coverage(ranked, split.train.items, k),
                "customers": len(split.rows),
            }
        )
    return pd.DataFrame(results).set_index("model")


def _utc(value: datetime | str, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} is not a time: {value!r}", field=name) from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# --------------------------------------------------------------------------- next best offer


@dataclass(frozen=True)
class PurchaseCalibration:
    """P(buy within `horizon`) = expit(intercept + slope · ALS score), and its check on
    held-out customers (Brier score, that of the base rate, ROC AUC)."""

    intercept: float
    slope: float
    horizon: pd.Timedelta
    pairs: int
    purchases: int
    brier: float
    brier_base_rate: float
    auc: float

    def probability(self, scores: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated probabilities of ALS scores."""
        return expit(self.intercept + self.slope * np.asarray(scores, dtype=np.float64))


class NextBestOffer:
    """Calibrated purchase probabilities per customer and product (see the module)."""

    def __init__(
        self, model: ALSRecommender, calibration: PurchaseCalibration, item_rates: pd.Series
    ) -> None:
        self.model = model
        self.calibration = calibration
        self.item_rates = item_rates

    def probabilities(self, customer: str, *, exclude_purchased: bool = True) -> pd.Series:
        """P(customer buys each product within the horizon), highest first. A customer
        never seen gets each product's share of buyers in the calibration window."""
        row = self.model.data.user_index.get(customer)
        if row is None:
            return self.item_rates.sort_values(ascending=False, kind="stable")
        scores = self.model.scores(np.array([row]))[0]
        series = pd.Series(self.calibration.probability(scores), index=self.model.data.items)
        if exclude_purchased:
            series = series.drop(self.model.data.items[self.model.data.purchased[row].indices])
        return series.sort_values(ascending=False, kind="stable")

    def offers(self, customer: str, k: int = 10) -> list[Recommendation]:
        """The k products the customer is likeliest to buy, with the probability."""
        k = check_k(k)
        top = self.probabilities(customer).head(k)
        return [Recommendation(str(item), float(p)) for item, p in top.items()]


def next_best_offer(
    events: pd.DataFrame,
    cutoff: datetime | str,
    *,
    end: datetime | str | None = None,
    weights: Mapping[str, float] = WEIGHTS,
    model: ALSRecommender | None = None,
    seed: int = 0,
    max_pairs: int = 2_000_000,
) -> NextBestOffer:
    """Calibrate ALS scores against the purchases in [cutoff, end) and refit on all
    events before `end` (see the module docstring); `max_pairs` caps the pairs used."""
    from sklearn.linear_model import LogisticRegression

    split = time_split(events, cutoff, end=end, weights=weights, exclude_purchased=True)
    train = split.train
    als = _als_like(model)
    als.fit(train)
    rng = np.random.default_rng(seed)
    users = np.arange(len(train.users))
    per_user = len(train.items)
    if len(users) * per_user > max_pairs:
        users = np.sort(rng.choice(users, max(1, max_pairs // per_user), replace=False))
    labels = np.zeros((len(users), per_user), dtype=bool)
    position = {row: i for i, row in enumerate(users)}
    for row, truth in zip(split.rows, split.relevant, strict=True):
        if row in position:
            cols = [train.item_index[item] for item in truth if item in train.item_index]
            labels[position[row], cols] = True
    open_pairs = train.purchased[users].toarray() == 0
    scores = als.scores(users)
    held_out = np.repeat(rng.random(len(users)) < 0.5, per_user).reshape(labels.shape)
    x, y, out = scores[open_pairs], labels[open_pairs], held_out[open_pairs]
    if y.all() or not y.any():
        raise InvalidInput(
            "calibration needs both bought and not-bought pairs after the cutoff", field="cutoff"
        )
    final = LogisticRegression(C=1e6).fit(x[:, None], y)
    calibration = PurchaseCalibration(
        float(final.intercept_[0]),
        float(final.coef_[0, 0]),
        split.end - split.cutoff,
        len(y),
        int(y.sum()),
        *_held_out_check(x, y, out),
    )
    rates = pd.Series(labels.mean(axis=0), index=train.items)
    everything = events[events["timestamp"] < split.end]
    serving = _als_like(model)
    serving.fit(Interactions.from_events(everything, weights))
    return NextBestOffer(serving, calibration, rates)


def _held_out_check(
    x: NDArray[np.float64], y: NDArray[np.bool_], out: NDArray[np.bool_]
) -> tuple[float, float, float]:
    """Brier score, base-rate Brier score and ROC AUC on the held-out customers, of a
    calibration fitted on the others (NaN when a half lacks buyers or non-buyers)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if not all(0 < y[half].sum() < half.sum() for half in (out, ~out)):
        return math.nan, math.nan, math.nan
    fit = LogisticRegression(C=1e6).fit(x[~out, None], y[~out])
    p_out = fit.predict_proba(x[out, None])[:, 1]
    brier = float(np.mean((p_out - y[out]) ** 2))
    base = float(np.mean((y[~out].mean() - y[out]) ** 2))
    return brier, base, float(roc_auc_score(y[out], x[out]))


def _als_like(model: ALSRecommender | None) -> ALSRecommender:
    """A fresh, unfitted ALS with the settings of `model` (defaults without one)."""
    if model is None:
        return ALSRecommender()
    return ALSRecommender(**model.params, seed=model.seed)
