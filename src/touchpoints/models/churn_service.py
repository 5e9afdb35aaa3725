"""Churn risk as of now, from the warehouse: the model is trained on the latest window
whose outcome is known (features at the last event − H, labels over the H days to the last
event) and scores every customer on their features at the last event. Its out-of-time
quality is measured one window earlier (train at last − 2H, test at last − H)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.models.churn import churn_risk, fit_churn_model, retention_list
from touchpoints.models.churn_features import customer_table
from touchpoints.models.clv_data import fit_from_transactions, score_customers
from touchpoints.models.clv_data import warehouse_transactions as transactions
from touchpoints.warehouse.connection import Warehouse


def last_event(warehouse: Warehouse) -> datetime:
    events = warehouse.table("events")
    last = events.timestamp.max().to_pyarrow().as_py()
    if last is None:
        raise InvalidInput("the warehouse holds no events", field="events")
    return last


def evaluation(warehouse: Warehouse, horizon: timedelta, target: str = "purchase") -> pd.DataFrame:
    """The out-of-time test metrics of the model, one row per metric."""
    end = last_event(warehouse)
    report = churn_risk(warehouse, end - 2 * horizon, horizon, target=target)  # type: ignore[arg-type]
    rows = {"train_cutoff": report.train_cutoff.isoformat(),
            "test_cutoff": report.test_cutoff.isoformat(), **report.metrics}  # fmt: skip
    return pd.DataFrame({"metric": list(rows), "value": [str(v) for v in rows.values()]})


def current_risk(
    warehouse: Warehouse, horizon: timedelta, target: str = "purchase", top: int = 3
) -> pd.DataFrame:
    """Every customer's risk of not buying (or, with target `activity`, of going quiet) in
    the next `horizon`, with the features that raise it most, riskiest first."""
    end = last_event(warehouse)
    train = customer_table(warehouse, end - horizon, horizon, target=target)  # type: ignore[arg-type]
    model = fit_churn_model(train)
    now = customer_table(warehouse, end + timedelta(microseconds=1))  # the last event too
    scores = model.score(now, top)
    scores["recency_days"] = now["recency_days"]
    scores["monetary"] = now["monetary"]
    return scores.sort_values("risk", ascending=False)


def retention_targets(
    warehouse: Warehouse, horizon: timedelta, target: str = "purchase"
) -> pd.DataFrame:
    """The retention list: customers high in churn risk and in CLV (BG/NBD + Gamma-Gamma
    over 12 months), with the suggested action (`models.churn.RULES`)."""
    scores = current_risk(warehouse, horizon, target)
    clv = score_customers(fit_from_transactions(transactions(warehouse)))
    chosen = retention_list(scores, clv.get("clv"))
    chosen["drivers"] = scores["drivers"].reindex(chosen.index)
    return chosen


def rows(frame: pd.DataFrame, limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    table = frame.head(limit).reset_index()
    return list(table.columns), table.to_dict("records")
