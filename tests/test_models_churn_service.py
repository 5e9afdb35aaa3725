"""Churn risk as of now, through the report the CLI and API use: trained on the latest
known window, every customer scored, the retention list priced with CLV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from scipy.stats import spearmanr

from touchpoints.collect.demo import DemoParameters, load_demo
from touchpoints.errors import InvalidInput
from touchpoints.identity import build
from touchpoints.models.churn import RULES
from touchpoints.models.churn_service import current_risk, last_event
from touchpoints.models.clv_data import (
    fit_from_transactions,
    score_customers,
    warehouse_transactions,
)
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse, connect


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    wh = connect(f"duckdb:///{tmp_path_factory.mktemp('churn') / 'tp.duckdb'}")
    load_demo(wh, DemoParameters(customers=600, months=12, seed=11))
    build(wh)
    yield wh
    wh.close()


def test_metrics_are_out_of_time(shop: Warehouse) -> None:
    got = {r["metric"]: r["value"] for r in run_report(shop, "churn", {"view": "metrics"}).rows}
    end = last_event(shop)
    assert got["test_cutoff"] == (end - timedelta(days=90)).isoformat()
    assert got["train_cutoff"] == (end - timedelta(days=180)).isoformat()
    assert float(got["roc_auc"]) > 0.65


def test_current_risk_scores_every_buyer(shop: Warehouse) -> None:
    scores = current_risk(shop, timedelta(days=90))
    buyers = set(warehouse_transactions(shop).customer_id)
    assert set(scores.index) == buyers
    assert scores.risk.between(0, 1).all() and scores.risk.is_monotonic_decreasing
    # The planted churners stop everything: long silence must mean high risk.
    assert spearmanr(scores.risk, scores.recency_days).statistic > 0.4
    rows = run_report(shop, "churn", {"top": "5"}).rows
    assert [r["customer_id"] for r in rows] == list(scores.index[:5])


def test_retention_list_is_priced_with_clv(shop: Warehouse) -> None:
    rows = run_report(shop, "churn", {"view": "retention", "top": "1000000"}).rows
    clv = score_customers(fit_from_transactions(warehouse_transactions(shop)))["clv"]
    actions = {rule[3]: rule[4] for rule in RULES}
    assert rows and all(actions[r["action"]] == r["priority"] for r in rows)
    assert [r["priority"] for r in rows] == sorted(r["priority"] for r in rows)
    for row in rows[:20]:
        assert row["worth"] == pytest.approx(clv[row["customer_id"]])
    top = [r for r in rows if r["priority"] == 1]
    assert top and min(r["risk"] for r in top) >= max(r["risk"] for r in rows if r["priority"] == 3)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"horizon_days": "0"}, "horizon_days"), ({"view": "all"}, "view"),
     ({"target": "love"}, "target"), ({"where": "channel=web"}, "where")],
)  # fmt: skip
def test_bad_parameters(shop: Warehouse, params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        run_report(shop, "churn", params)
    assert caught.value.field == field
