"""Funnels: checked against a replay of ClickHouse's windowFunnel scan, against ClickHouse
itself (chdb), and at the edges: ties, order, repeated steps, the window boundary."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, random_log, settings_for, write_events
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, user_events
from touchpoints.insights.funnels import (
    Step,
    dropped_after,
    funnel,
    funnel_users,
    parse_window,
)
from touchpoints.warehouse import Warehouse


def replay_window_funnel(rows: list[dict], names: list[str], window_s: float) -> dict[str, int]:
    """ClickHouse's windowFunnel (default mode) as its source describes it: per user, the
    (time, step) entries sorted, then one greedy scan keeping the start of each level."""
    entries: dict[str, list[tuple[float, int]]] = {}
    for row in rows:
        t = (row["when"] - T0).total_seconds()
        for index, name in enumerate(names):
            if row["type"] == "track" and row["name"] == name:
                entries.setdefault(row["user"], []).append((t, index))
    levels = {}
    for user, items in entries.items():
        items.sort()
        starts: list[float | None] = [None] * len(names)
        best = 0
        for t, index in items:
            if index == 0:
                starts[0] = t
                best = max(best, 1)
            elif starts[index - 1] is not None and t <= starts[index - 1] + window_s:
                starts[index] = starts[index - 1]
                best = max(best, index + 1)
        if best:
            levels[user] = best
    return levels


def levels_of(warehouse: Warehouse, names: list[str], window: timedelta) -> dict[str, int]:
    users = funnel_users(user_events(warehouse), [Step(n) for n in names], window).to_pyarrow()
    return {u.removeprefix("user:"): lv for u, lv in
            zip(users[USER].to_pylist(), users["level"].to_pylist(), strict=True)}  # fmt: skip


def clear(warehouse: Warehouse) -> None:
    warehouse.truncate("events")


def test_funnel_levels_match_the_clickhouse_scan(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine)
    @given(
        log=random_log(users=3, names=("a", "b", "c"), max_events=20, span_s=3600, tick_s=60),
        names=st.lists(st.sampled_from(("a", "b", "c")), min_size=2, max_size=4),
        window_min=st.integers(1, 40),
    )
    def check(log: list[dict], names: list[str], window_min: int) -> None:
        clear(warehouse)
        write_events(warehouse, log)
        window = timedelta(minutes=window_min)
        expected = replay_window_funnel(log, names, window.total_seconds())
        assert levels_of(warehouse, names, window) == expected

    check()


def test_funnel_matches_chdb_window_funnel(duck: Warehouse) -> None:
    """The same events through ClickHouse's own windowFunnel (embedded, via chdb)."""
    chdb = pytest.importorskip("chdb")
    rng = np.random.default_rng(3)
    rows = [
        event(f"u{rng.integers(60)}", float(rng.integers(0, 4 * 3600)),
              str(rng.choice(["view", "add", "pay", "other"])))
        for _ in range(1500)
    ]  # fmt: skip
    write_events(duck, rows)
    names = ["view", "add", "view", "pay"]
    window = timedelta(minutes=20)
    ours = levels_of(duck, names, window)
    table = pa.table(  # noqa: F841 (read by chdb's Python() table function)
        {
            "u": [r["user"] for r in rows],
            "t": pa.array([int((r["when"] - T0).total_seconds()) for r in rows], pa.uint64()),
            "e": [r["name"] for r in rows],
        }
    )
    conditions = ", ".join(f"e = '{n}'" for n in names)
    found = chdb.query(
        f"SELECT u, windowFunnel({int(window.total_seconds())})(t, {conditions}) AS level "
        "FROM Python(table) GROUP BY u HAVING level > 0",
        "ArrowTable",
    )
    theirs = dict(zip(found["u"].to_pylist(), found["level"].to_pylist(), strict=True))
    assert ours == theirs
    assert len(set(theirs.values())) >= 3  # the data exercise several levels


def test_edges_ties_order_repeats_and_the_window(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            # tie: b written before a at the same instant still counts as a then b
            event("tie", 5, "b"), event("tie", 5, "a"),
            # out of order: c before b in time never completes a-b-c
            event("order", 0, "a"), event("order", 10, "c"), event("order", 20, "b"),
            # the window is inclusive: b exactly 600 s after a
            event("edge", 0, "a"), event("edge", 600, "b"),
            event("late", 0, "a"), event("late", 601, "b"),
            # a later start rescues a chain the first start could not finish in time
            event("restart", 0, "a"), event("restart", 900, "a"), event("restart", 1000, "b"),
        ],
    )  # fmt: skip
    levels = levels_of(warehouse, ["a", "b", "c"], timedelta(minutes=10))
    assert levels == {"tie": 2, "order": 2, "edge": 2, "late": 1, "restart": 2}


def test_a_repeated_step_is_completed_by_one_event_as_in_clickhouse(warehouse) -> None:
    write_events(warehouse, [event("once", 0, "view"), event("twice", 0, "view"),
                             event("twice", 30, "view"), event("twice", 40, "buy")])  # fmt: skip
    levels = levels_of(warehouse, ["view", "view", "buy"], timedelta(minutes=5))
    assert levels == {"once": 2, "twice": 3}


def test_report_conversion_and_time_to_convert(warehouse: Warehouse) -> None:
    seconds = [30, 60, 90, 300, 600]
    rows = []
    for i, s in enumerate(seconds):
        rows += [event(f"u{i}", 0, "view", properties={"plan": "pro" if i < 2 else "free"}),
                 event(f"u{i}", s, "buy")]  # fmt: skip
    rows += [event("window-shopper", 0, "view", properties={"plan": "free"})]
    rows += [event("buyer-only", 0, "buy")]  # never did step 1: not in the funnel
    write_events(warehouse, rows)
    steps = [Step("view"), Step("buy")]
    report = funnel(user_events(warehouse), steps, timedelta(hours=1)).to_pandas()
    assert report.users.tolist() == [6, 5]
    assert report.conversion_from_first.tolist() == pytest.approx([1.0, 5 / 6])
    assert report.median_seconds[1] == pytest.approx(np.percentile(seconds, 50))
    assert report.p90_seconds[1] == pytest.approx(np.percentile(seconds, 90))
    by_plan = funnel(user_events(warehouse), steps, timedelta(hours=1), breakdown="plan")
    frame = by_plan.to_pandas().set_index(["breakdown", "step"])
    assert frame.loc[("pro", 2), "users"] == 2
    assert frame.loc[("free", 1), "users"] == 4
    assert frame.loc[("free", 2), "conversion_from_previous"] == pytest.approx(3 / 4)
    dropped = dropped_after(user_events(warehouse), steps, timedelta(hours=1), 1).to_pandas()
    assert dropped[USER].tolist() == ["user:window-shopper"]


def test_steps_with_conditions_and_pages(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("u1", 0, path="/pricing"), event("u1", 10, "signup", properties={"plan": "pro"}),
            event("u2", 0, path="/pricing"), event("u2", 10, "signup", properties={"plan": "free"}),
            event("u3", 0, path="/blog"), event("u3", 10, "signup", properties={"plan": "pro"}),
        ],
    )  # fmt: skip
    steps = [Step.parse("page:/pricing"), Step.parse("signup[plan=pro]")]
    assert steps[1].where[0].value == "pro"
    report = funnel(user_events(warehouse), steps, timedelta(days=1)).to_pandas()
    assert report.users.tolist() == [2, 1]


@pytest.mark.parametrize("text", ["", "0d", "7x", "d7"])
def test_bad_windows_and_steps_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_window(text)
    with pytest.raises(InvalidInput):
        Step.parse("Viewed[plan]")
    assert parse_window("7d") == timedelta(days=7)
