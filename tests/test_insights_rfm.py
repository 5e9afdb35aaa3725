"""RFM: measures and scores against a pandas reference (rank(method="min") quintiles),
the named-group grid, and the summary's sums, on both engines."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, settings_for, write_events
from touchpoints.insights.frame import Condition, Scope
from touchpoints.insights.rfm import (
    GRID,
    RFM_COLUMNS,
    SEGMENTS,
    fm_score,
    rfm,
    rfm_summary,
    segment_name,
)
from touchpoints.warehouse import Warehouse

AS_OF = T0 + timedelta(days=40)

#: The documented grid, written out again by hand: rows R = 5..1, columns FM = 1..5.
EXPECTED_GRID = """
5 | New Customers  | Potential Loyalists | Potential Loyalists | Champions       | Champions
4 | Promising      | Potential Loyalists | Potential Loyalists | Loyal Customers | Champions
3 | About to Sleep | About to Sleep      | Need Attention      | Loyal Customers | Loyal Customers
2 | Hibernating    | Hibernating         | At Risk             | At Risk         | Can't Lose Them
1 | Lost           | Lost                | At Risk             | Can't Lose Them | Can't Lose Them
"""
NAMED = {
    (int(cells[0]), fm): name.strip()
    for line in EXPECTED_GRID.strip().splitlines()
    for cells in [line.split("|")]
    for fm, name in enumerate(cells[1:], start=1)
}


def reference(rows: list[dict]) -> pd.DataFrame:
    """RFM by pandas from the rows written (orders before AS_OF only)."""
    orders = pd.DataFrame(
        [r for r in rows if r["name"] == "Order Completed" and r["when"] < AS_OF],
        columns=["user", "when", "name", "revenue"],
    )
    if orders.empty:
        return pd.DataFrame(columns=list(RFM_COLUMNS))
    per = orders.groupby("user").agg(
        last=("when", "max"), frequency=("when", "size"),
        monetary=("revenue", lambda s: round(s.astype(float).fillna(0.0).sum(), 2)),
    )  # fmt: skip
    per["recency_days"] = [(AS_OF.date() - t.date()).days for t in per["last"]]
    n = len(per)

    def score(values: pd.Series, best_high: bool = True) -> pd.Series:
        ranks = (values if best_high else -values).rank(method="min") - 1
        return (np.floor(5 * ranks / n) + 1).astype(int)

    per["r"] = score(per["recency_days"], best_high=False)
    per["f"] = score(per["frequency"])
    per["m"] = score(per["monetary"])
    per["rfm"] = per.r.astype(str) + per.f.astype(str) + per.m.astype(str)
    fm = np.floor((per.f + per.m) / 2 + 0.5).astype(int)
    per["segment"] = [NAMED[(r, x)] for r, x in zip(per.r, fm, strict=True)]
    per["customer_id"] = ["user:" + u for u in per.index]
    return per.reset_index()[list(RFM_COLUMNS)].sort_values("customer_id", ignore_index=True)


def compute(warehouse: Warehouse) -> pd.DataFrame:
    table = rfm(warehouse, AS_OF).to_pandas()
    return table[list(RFM_COLUMNS)].sort_values("customer_id", ignore_index=True)


orders_strategy = st.lists(
    st.builds(
        lambda u, quarter_days, name, revenue: event(
            f"u{u}", T0 + timedelta(hours=6 * quarter_days), name, revenue=revenue
        ),
        st.integers(0, 11),
        st.integers(0, 170),  # some after AS_OF (160 quarter days)
        st.sampled_from(["Order Completed", "Order Completed", "Product Viewed"]),
        st.sampled_from([None, 10.0, 19.99, 5.5, 100.0, 0.01]),
    ),
    min_size=1,
    max_size=40,
)


def test_rfm_matches_pandas_on_random_orders(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine, duckdb_examples=30)
    @given(rows=orders_strategy)
    def check(rows: list[dict]) -> None:
        warehouse.truncate("events")
        write_events(warehouse, rows)
        ours, theirs = compute(warehouse), reference(rows)
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
        summary = rfm_summary(rfm(warehouse, AS_OF)).to_pandas()
        assert summary.segment.tolist() == list(SEGMENTS)
        counts = theirs.segment.value_counts()
        assert summary.customers.tolist() == [int(counts.get(s, 0)) for s in SEGMENTS]
        assert summary.customers.sum() == len(theirs)
        if len(theirs):
            assert summary.share.sum() == pytest.approx(1.0)
            assert summary.revenue.sum() == pytest.approx(theirs.monetary.sum())
            by_group = theirs.groupby("segment").monetary.sum()
            for row in summary.itertuples():
                assert row.revenue == pytest.approx(by_group.get(row.segment, 0.0))

    check()


def test_distinct_values_split_into_fifths_and_ties_stay_together(warehouse: Warehouse) -> None:
    rows = []
    for i in range(10):  # customer i: last order i days before AS_OF, i + 1 orders of 10 * i
        for k in range(i + 1):
            rows.append(event(f"c{i}", AS_OF - timedelta(days=i, hours=k + 1),
                              "Order Completed", revenue=10.0 * i))  # fmt: skip
    for j in range(5):  # five one-order customers, all alike
        rows.append(event(f"t{j}", AS_OF - timedelta(days=30), "Order Completed", revenue=5.0))
    write_events(warehouse, rows)
    table = compute(warehouse).set_index("customer_id")
    distinct = table.loc[[f"user:c{i}" for i in range(10)]]
    ties = table.loc[[f"user:t{j}" for j in range(5)]]
    assert distinct.recency_days.tolist() == list(range(10))
    # 15 customers, score = 1 + floor(5 * worse / 15): the five tied ones are the worst on
    # every measure and all get 1; c0's one order ties with them too (6 customers: F = 1)
    assert set(ties.r) == set(ties.f) == set(ties.m) == {1}
    assert ties.segment.unique().tolist() == ["Lost"]
    assert distinct.f.tolist() == [1, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    assert distinct.m.tolist() == [1, 3, 3, 3, 4, 4, 4, 5, 5, 5]  # c0 spent 0: below the ties
    assert distinct.r.tolist() == [5, 5, 5, 4, 4, 4, 3, 3, 3, 2]
    assert distinct.loc["user:c9", "rfm"] == "255"
    assert distinct.loc["user:c9", "segment"] == "Can't Lose Them"
    assert distinct.loc["user:c0", "segment"] == "New Customers"
    assert distinct.loc["user:c1", "segment"] == "Potential Loyalists"  # R 5, FM 3


def test_the_grid_is_the_documented_one_and_names_every_group() -> None:
    assert {(r, fm): GRID[r][fm - 1] for r in range(1, 6) for fm in range(1, 6)} == NAMED
    assert set(NAMED.values()) == set(SEGMENTS) and len(SEGMENTS) == 11
    assert fm_score(4, 5) == 5 and fm_score(1, 2) == 2 and fm_score(3, 3) == 3
    assert segment_name(5, 5, 5) == "Champions"
    assert segment_name(5, 1, 1) == "New Customers"
    assert segment_name(1, 1, 2) == "Lost"
    assert segment_name(1, 5, 4) == "Can't Lose Them"


def test_scope_and_empty_warehouse(warehouse: Warehouse) -> None:
    assert rfm(warehouse, AS_OF).to_pandas().empty
    summary = rfm_summary(rfm(warehouse, AS_OF)).to_pandas()
    assert summary.customers.sum() == 0 and summary.share.sum() == 0
    assert summary.revenue_share.isna().all()
    write_events(warehouse, [
        event("a", 0, "Order Completed", revenue=10.0, channel="store"),
        event("b", 0, "Order Completed", revenue=10.0),
    ])  # fmt: skip
    only_store = rfm(warehouse, AS_OF, Scope(where=(Condition("channel", "store"),)))
    assert only_store.to_pandas().customer_id.tolist() == ["user:a"]
