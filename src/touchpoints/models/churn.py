"""Churn risk: who will stop buying, why, and whom to keep.

Method. `customer_table` (see `touchpoints.models.churn_features`) gives, at a cutoff c,
each customer's features from events before c and a label: no purchase (or no activity)
in [c, c + H). A LightGBM binary classifier (log loss, fixed rounds, seeded, one thread
by default, so runs repeat exactly) is trained at cutoff c1 and tested, out of time, at
c2 >= c1 + H, so that no training label overlaps a test label. The report gives ROC AUC
and PR AUC (average precision), the Brier score and a reliability table by decile, the
lift in the top decile, the same AUC for recency alone (the baseline to beat), and per
customer the risk and its top drivers: LightGBM's SHAP values (`pred_contrib=True`,
log-odds that sum with the bias to the raw score).

Retention list (`retention_list`): risk and worth (CLV when given, else the revenue so
far) are cut into quintiles, 5 the highest; then

====================  ==================  ==========================  ========
risk quintile         worth quintile      action                      priority
====================  ==================  ==========================  ========
5                     5                   personal retention offer    1
5                     4                   targeted discount           2
4                     5                   loyalty check-in            3
5                     1-3                 automated win-back email    4
====================  ==================  ==========================  ========

Everyone else is left off. Within a priority, the larger expected loss (risk x worth)
comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from touchpoints.errors import InvalidInput
from touchpoints.identity.config import IdentityConfig
from touchpoints.models.churn_features import FEATURES, LABEL, Target, as_utc, customer_table
from touchpoints.warehouse import Warehouse

MIN_CUSTOMERS = 50
MIN_PER_CLASS = 5
"""Fewest customers, and of each label, a fit or a test accepts."""

#: LightGBM settings: shallow trees, shrinkage and bagging for a few thousand customers.
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 25,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_col_wise": True,
    "verbose": -1,
}
ROUNDS = 300

#: (risk quintile, lowest worth quintile, highest, action, priority), first match wins.
RULES = (
    (5, 5, 5, "personal retention offer", 1),
    (5, 4, 4, "targeted discount", 2),
    (4, 5, 5, "loyalty check-in", 3),
    (5, 1, 3, "automated win-back email", 4),
)


@dataclass(frozen=True)
class ChurnModel:
    """A trained booster and the feature order it expects."""

    booster: lgb.Booster
    features: tuple[str, ...] = FEATURES

    def _matrix(self, table: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in table.columns]
        if missing:
            raise InvalidInput(f"the table lacks features {missing}", field="features")
        return table[list(self.features)].to_numpy(dtype=float)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """The churn probability of each row."""
        return np.asarray(self.booster.predict(self._matrix(table)), dtype=float)

    def contributions(self, table: pd.DataFrame) -> pd.DataFrame:
        """SHAP contributions in log-odds, one column per feature plus `bias`; each row
        sums to the raw score (the log-odds of the risk)."""
        values = self.booster.predict(self._matrix(table), pred_contrib=True)
        return pd.DataFrame(values, index=table.index, columns=[*self.features, "bias"])

    def score(self, table: pd.DataFrame, top: int = 3) -> pd.DataFrame:
        """Per customer: `risk` and `drivers`, the `top` features pushing the risk up most
        (largest contributions), each a dict of feature, value and contribution."""
        contrib = self.contributions(table)
        raw = contrib.sum(axis=1)
        parts = contrib[list(self.features)].to_numpy()
        values = table[list(self.features)].to_numpy(dtype=float)
        order = np.argsort(-parts, axis=1, kind="stable")[:, :top]
        drivers = [
            [
                {
                    "feature": self.features[j],
                    "value": float(values[i, j]),
                    "contribution": float(parts[i, j]),
                }
                for j in row
            ]
            for i, row in enumerate(order)
        ]
        return pd.DataFrame(
            {"risk": 1.0 / (1.0 + np.exp(-raw.to_numpy())), "drivers": drivers},
            index=table.index,
        )


def fit_churn_model(
    table: pd.DataFrame, *, seed: int = 7, num_threads: int = 1, rounds: int = ROUNDS
) -> ChurnModel:
    """A LightGBM classifier of `churned` on `FEATURES` (a `customer_table` with labels)."""
    y = _labels(table, "cutoff")
    booster = lgb.train(
        {**PARAMS, "seed": seed, "num_threads": num_threads},
        lgb.Dataset(table[list(FEATURES)].to_numpy(dtype=float), y, feature_name=list(FEATURES)),
        num_boost_round=rounds,
    )
    return ChurnModel(booster)


def _labels(table: pd.DataFrame, field: str) -> np.ndarray:
    """The 0/1 labels, after checking there are enough customers of both kinds."""
    if LABEL not in table.columns:
        raise InvalidInput("the table has no labels (give a horizon)", field="horizon")
    y = table[LABEL].to_numpy(dtype=int)
    if len(y) < MIN_CUSTOMERS:
        raise InvalidInput(
            f"{len(y)} customers at this cutoff; at least {MIN_CUSTOMERS} are needed", field=field
        )
    churned = int(y.sum())
    if min(churned, len(y) - churned) < MIN_PER_CLASS:
        raise InvalidInput(
            f"{churned} of {len(y)} customers churned: both outcomes need at least "
            f"{MIN_PER_CLASS} customers",
            field=field,
        )
    return y


def top_decile_lift(y: ArrayLike, risk: ArrayLike) -> float:
    """Churn rate among the highest-risk tenth (ceil(n/10) customers, ties by position)
    divided by the overall churn rate."""
    y, risk = np.asarray(y, dtype=float), np.asarray(risk, dtype=float)
    k = int(np.ceil(len(y) / 10))
    top = np.argsort(-risk, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def reliability_table(y: ArrayLike, risk: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed churn by risk decile (edges at the risk's quantiles, as
    scikit-learn's `calibration_curve(strategy="quantile")`; empty bins left out)."""
    y, risk = np.asarray(y, dtype=float), np.asarray(risk, dtype=float)
    edges = np.percentile(risk, np.linspace(0, 100, bins + 1))
    which = np.searchsorted(edges[1:-1], risk)  # a risk on an edge joins the lower bin
    frame = pd.DataFrame({"decile": which + 1, "risk": risk, "churned": y})
    table = frame.groupby("decile").agg(
        customers=("risk", "size"),
        low=("risk", "min"),
        high=("risk", "max"),
        mean_risk=("risk", "mean"),
        churn_rate=("churned", "mean"),
    )
    return table.reset_index()


def churn_metrics(y: ArrayLike, risk: ArrayLike) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), Brier score, top-decile lift, churn rate."""
    y, risk = np.asarray(y, dtype=int), np.asarray(risk, dtype=float)
    return {
        "customers": float(len(y)),
        "churn_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, risk)),
        "pr_auc": float(average_precision_score(y, risk)),
        "brier": float(brier_score_loss(y, risk)),
        "top_decile_lift": top_decile_lift(y, risk),
    }


@dataclass(frozen=True)
class ChurnReport:
    """An out-of-time evaluation: the model, test metrics and per-customer scores."""

    model: ChurnModel
    train_cutoff: datetime
    test_cutoff: datetime
    horizon: timedelta
    target: str
    metrics: dict[str, float]
    reliability: pd.DataFrame
    scores: pd.DataFrame = field(repr=False)
    train: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)


def churn_risk(
    warehouse: Warehouse,
    train_cutoff: datetime,
    horizon: timedelta = timedelta(days=90),
    *,
    test_cutoff: datetime | None = None,
    target: Target = "purchase",
    config: IdentityConfig | None = None,
    top: int = 3,
    seed: int = 7,
    num_threads: int = 1,
) -> ChurnReport:
    """Train at `train_cutoff`, test at `test_cutoff` (default train_cutoff + horizon):
    metrics (with `recency_auc`, recency alone as the score) and per-customer scores."""
    train_cutoff = as_utc(train_cutoff, "train_cutoff")
    if not isinstance(horizon, timedelta) or horizon <= timedelta(0):
        raise InvalidInput("the horizon must be a positive duration", field="horizon")
    test_cutoff = as_utc(test_cutoff or train_cutoff + horizon, "test_cutoff")
    if test_cutoff < train_cutoff + horizon:
        raise InvalidInput(
            "the test cutoff must be at least one horizon after the training cutoff, so "
            "that training labels do not overlap test labels",
            field="test_cutoff",
        )
    tables = []
    for name, cutoff in (("train_cutoff", train_cutoff), ("test_cutoff", test_cutoff)):
        try:
            tables.append(customer_table(warehouse, cutoff, horizon, target=target, config=config))
        except InvalidInput as exc:
            raise InvalidInput(
                exc.message, field=name if exc.field == "cutoff" else exc.field
            ) from exc
    train, test = tables
    _labels(train, "train_cutoff")
    y_test = _labels(test, "test_cutoff")
    model = fit_churn_model(train, seed=seed, num_threads=num_threads)
    scores = model.score(test, top)
    scores[LABEL] = y_test
    metrics = churn_metrics(y_test, scores["risk"])
    metrics["recency_auc"] = float(roc_auc_score(y_test, test["recency_days"]))
    metrics["train_customers"] = float(len(train))
    metrics["train_churn_rate"] = float(train[LABEL].mean())
    return ChurnReport(
        model, train_cutoff, test_cutoff, horizon, target, metrics,
        reliability_table(y_test, scores["risk"]), scores, train, test,
    )  # fmt: skip


def quintile(values: pd.Series) -> pd.Series:
    """1-5 by rank (ties by position), 5 the highest fifth."""
    ranks = values.rank(method="first").to_numpy()
    return pd.Series(np.ceil(ranks * 5 / len(values)).astype(int), index=values.index)


def retention_list(
    scores: pd.DataFrame,
    clv: pd.Series | pd.DataFrame | None = None,
    *,
    worth_column: str = "monetary",
) -> pd.DataFrame:
    """The customers to act on, by the rule of the module docstring: `scores` holds `risk`
    (and, without `clv`, the worth proxy `worth_column`) indexed by customer id; `clv` is
    a value per customer id (a one-column frame, or one with a `clv` column). Customers
    missing from `clv` count as worth 0."""
    if "risk" not in scores.columns or scores.empty:
        raise InvalidInput("the scores need a `risk` column and rows", field="scores")
    if clv is None:
        if worth_column not in scores.columns:
            raise InvalidInput(f"no CLV and no {worth_column!r} column", field="clv")
        worth = scores[worth_column].astype(float)
    else:
        if isinstance(clv, pd.DataFrame):
            if "clv" not in clv.columns and clv.shape[1] != 1:
                raise InvalidInput("a CLV frame needs one column or a `clv` column", field="clv")
            clv = clv["clv"] if "clv" in clv.columns else clv.iloc[:, 0]
        worth = pd.to_numeric(clv, errors="coerce").reindex(scores.index).fillna(0.0)
    table = pd.DataFrame({"risk": scores["risk"].astype(float), "worth": worth}).sort_index()
    table["risk_quintile"] = quintile(table["risk"])
    table["worth_quintile"] = quintile(table["worth"])
    table["expected_loss"] = table["risk"] * table["worth"]
    table["action"], table["priority"] = None, 0
    for risk_q, low, high, action, priority in reversed(RULES):
        hit = (table.risk_quintile == risk_q) & table.worth_quintile.between(low, high)
        table.loc[hit, ["action", "priority"]] = action, priority
    chosen = table[table.priority > 0]
    return chosen.sort_values(["priority", "expected_loss"], ascending=[True, False])


__all__ = [
    "FEATURES",
    "RULES",
    "ChurnModel",
    "ChurnReport",
    "churn_metrics",
    "churn_risk",
    "customer_table",
    "fit_churn_model",
    "quintile",
    "reliability_table",
    "retention_list",
    "top_decile_lift",
]
