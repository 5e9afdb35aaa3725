"""Campaign KPIs and customer retention, on both engines, against plain-Python references."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, settings_for, write_events
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Scope, user_events
from touchpoints.insights.kpis import (
    KPI_COLUMNS,
    RETENTION_COLUMNS,
    campaign_kpis,
    customer_retention,
    first_orders,
)
from touchpoints.insights.sessions import sessionize, sessions
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import SPEND

DAY = 86_400
TRAFFIC = {  # landing UTM (source, medium, campaign) → its default channel group
    "search": (("google", "cpc", "brand"), "Paid Search"),
    "social": (("facebook", "paid_social", "spring"), "Paid Social"),
    "email": (("newsletter", "email", "news"), "Email"),
    "display": (("adnet", "display", None), "Display"),
    "direct": (None, "Direct"),
}
SPEND_CHANNELS = ("Paid Search", "Paid Social", "Display", "Affiliates")
SPEND_CAMPAIGNS = ("brand", "spring", "other", None)


# -- helpers --------------------------------------------------------------------------
def reset(warehouse: Warehouse) -> None:
    """Empty the tables a hypothesis example writes (the fixture is per test)."""
    for name in ("events", "spend"):
        warehouse.drop(name)
    warehouse.ensure_schema()


def spend_row(day: date, channel: str, campaign: str | None, impressions: int | None,
              clicks: int | None, cost: float, key: str) -> dict[str, Any]:  # fmt: skip
    return {"date": day, "channel": channel, "source": "test", "campaign": campaign,
            "impressions": impressions, "clicks": clicks, "cost": cost, "currency": "USD",
            "import_key": key}  # fmt: skip


def write_spend(warehouse: Warehouse, rows: list[dict[str, Any]]) -> None:
    warehouse.insert("spend", pa.Table.from_pylist(rows, schema=SPEND.to_pyarrow()))


def visit(user: str, when: float, traffic: str, order: float | None = None) -> list[dict]:
    """A landing page from `traffic`, then an order a minute later when `order` is given."""
    rows = [event(user, when, path="/", utm=TRAFFIC[traffic][0])]
    if order is not None:
        rows.append(event(user, when + 60, "Order Completed", revenue=order))
    return rows


def day_of(value: Any) -> date:
    return pd.Timestamp(value).date()


def utc(value: Any) -> pd.Timestamp:
    """A timestamp in UTC (Spark returns naive UTC timestamps, DuckDB aware ones)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def records(frame: pd.DataFrame, key: str) -> dict[tuple, dict[str, Any]]:
    """Rows by (key, period), with NaN/None as None and numbers as floats."""
    out = {}
    for row in frame.to_dict("records"):
        clean = {
            k: None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            for k, v in row.items()
        }
        out[(clean.pop(key), day_of(clean.pop("period")))] = clean
    return out


def assert_same(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert set(got) == set(want)
    for k, expected in want.items():
        for column, value in expected.items():
            actual = got[k][column]
            if value is None:
                assert actual is None, (k, column, actual)
            else:
                assert actual == pytest.approx(value, rel=1e-9, abs=1e-9), (k, column, actual)


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def period_of(day: date, period: str) -> date:
    if period == "all":
        return date(1970, 1, 1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if period == "month" else day


def _sum(values: list) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


# -- references -----------------------------------------------------------------------
def reference_kpis(
    visits: pd.DataFrame, spend: list[dict], by: str, period: str, first: dict | None
) -> dict[tuple, dict[str, Any]]:
    """The KPIs from the sessions' rows and the spend rows, in plain Python."""
    column = {"channel": "channel_group", "campaign": "utm_campaign"}[by]
    rows = visits.to_dict("records")
    first_conv: dict[str, int] = {}
    for r in rows:
        if r["conversions"] > 0:
            n = first_conv.get(r[USER])
            first_conv[r[USER]] = r["session_number"] if n is None else min(n, r["session_number"])
    groups: dict[tuple, dict[str, Any]] = {}

    def group(key: tuple) -> dict[str, Any]:
        return groups.setdefault(key, {"sessions": 0, "conversions": 0, "revenue": 0.0,
                                       "new_customers": 0, "spend": []})  # fmt: skip

    for r in rows:
        key = r[column] if isinstance(r[column], str) else "(not set)"
        g = group((key, period_of(utc(r["start"]).date(), period)))
        g["sessions"] += 1
        g["conversions"] += r["conversions"]
        g["revenue"] += r["revenue"]
        earliest = None if first is None else first.get(r[USER])
        if first_conv.get(r[USER]) == r["session_number"] and (
            earliest is None or utc(r["start"]) <= earliest
        ):
            g["new_customers"] += 1
    for s in spend:
        key = s[by] if s[by] is not None else "(not set)"
        group((key, period_of(s["date"], period)))["spend"].append(s)
    want = {}
    for key, g in groups.items():
        paid = g.pop("spend")
        impressions = _sum([s["impressions"] for s in paid])
        clicks = _sum([s["clicks"] for s in paid])
        cost = _sum([s["cost"] for s in paid])
        revenue, conversions = g["revenue"], g["conversions"]
        want[key] = {**g, "impressions": impressions, "clicks": clicks, "cost": cost,
                     "ctr": div(clicks, impressions),
                     "conversion_rate": div(conversions, g["sessions"]),
                     "cpa": div(cost, conversions), "cac": div(cost, g["new_customers"]),
                     "aov": div(revenue, conversions), "roas": div(revenue, cost),
                     "roi": None if cost is None else div(revenue - cost, cost)}  # fmt: skip
    return want


def _index(day: date, period: str) -> int:
    if period == "month":
        return day.year * 12 + day.month - 1
    return day.toordinal() // 7 if period == "week" else day.toordinal()


def reference_retention(log: list[dict], period: str) -> dict[tuple, dict[str, Any]]:
    """Customers per period from the raw rows, in plain Python."""
    active: dict[int, set[str]] = {}
    starts: dict[int, date] = {}
    for r in log:
        if r["name"] == "Order Completed":
            day = period_of(r["when"].date(), period)
            active.setdefault(_index(day, period), set()).add(r["user"])
            starts[_index(day, period)] = day
    if not active:
        return {}
    seen: set[str] = set()
    want = {}
    day = min(starts.values())
    last = period_of(max(r["when"] for r in log).date(), period)
    while day <= last:
        i = _index(day, period)
        now, before = active.get(i, set()), active.get(i - 1, set())
        new = now - seen
        seen |= now
        rate = div(len(now) - len(new), len(before))
        want[(None, day)] = {
            "customers_start": len(before), "customers_end": len(now),
            "new_customers": len(new), "retained": len(now & before),
            "resurrected": len(now - before - new), "retention_rate": rate,
            "churn_rate": None if rate is None else 1 - rate,
        }  # fmt: skip
        day = period_of(day + timedelta(days={"day": 1, "week": 7, "month": 31}[period]), period)
    return want


# -- random logs ----------------------------------------------------------------------
def visits_strategy(engine: str) -> st.SearchStrategy[list[tuple]]:
    return st.lists(
        st.tuples(
            st.integers(0, 3),  # user
            st.integers(0, 45),  # day after T0 (crosses a month and several weeks)
            st.integers(0, 3),  # hour: sessions split by time or by campaign
            st.sampled_from(sorted(TRAFFIC)),
            st.sampled_from([None, None, 10.0, 25.5]),  # order revenue
            st.booleans(),  # a sign-up too
        ),
        min_size=1,
        max_size=12,
    )


def spend_strategy(engine: str) -> st.SearchStrategy[list[tuple]]:
    maybe = [None]
    return st.lists(
        st.tuples(
            st.integers(0, 45),
            st.sampled_from(SPEND_CHANNELS),
            st.sampled_from(SPEND_CAMPAIGNS),
            st.sampled_from([*maybe, 0, 40, 1000]),
            st.sampled_from([*maybe, 0, 3]),
            st.sampled_from([0.0, 12.5, 30.0]),
        ),
        max_size=6,
    )


def build_log(drawn: list[tuple]) -> list[dict]:
    log = []
    for user, day, hour, traffic, revenue, signup in drawn:
        when = day * DAY + hour * 3600
        log += visit(f"u{user}", when, traffic, revenue)
        if signup:
            log.append(event(f"u{user}", when + 120, "Signed Up"))
    return log


def test_kpis_and_retention_match_references_on_random_logs(
    warehouse: Warehouse, engine: str
) -> None:
    @settings_for(engine, duckdb_examples=30)
    @given(
        visits_strategy(engine),
        spend_strategy(engine),
        st.sampled_from(["channel", "campaign"]),
        st.sampled_from(["all", "day", "week", "month"]),
        st.sampled_from([None, 0, 10]),
    )
    def check(drawn, drawn_spend, by, period, cut_day) -> None:
        reset(warehouse)
        log = build_log(drawn)
        write_events(warehouse, log)
        spend = [
            spend_row((T0 + timedelta(days=d)).date(), c, camp, i, k, cost, f"k{n}")
            for n, (d, c, camp, i, k, cost) in enumerate(drawn_spend)
        ]
        write_spend(warehouse, spend)
        scope = Scope(start=None if cut_day is None else T0 + timedelta(days=cut_day))
        visits = sessions(sessionize(user_events(warehouse, scope)))
        firsts = None if cut_day is None else first_orders(user_events(warehouse))
        got = campaign_kpis(visits, warehouse.table("spend"), by, period, firsts).to_pandas()
        assert list(got.columns) == [by, "period", *KPI_COLUMNS]
        earliest = None
        if cut_day is not None:
            earliest = {}  # by customer id: a user id's is "user:" + it
            for r in log:
                if r["name"] in ("Order Completed", "Signed Up"):
                    who = "user:" + r["user"]
                    earliest[who] = min(earliest.get(who, r["when"]), r["when"])
        want = reference_kpis(visits.to_pandas(), spend, by, period, earliest)
        assert_same(records(got, by), want)

        every = "month" if period == "all" else period
        kept = customer_retention(user_events(warehouse), every).to_pandas()
        assert list(kept.columns) == list(RETENTION_COLUMNS)
        kept.insert(0, "key", None)
        assert_same(records(kept, "key"), reference_retention(log, every))

    check()


# -- hand-made cases ------------------------------------------------------------------
def test_kpis_by_channel_by_hand(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        visit("u1", 0, "search", order=40.0)
        + visit("u1", 2 * DAY, "search", order=20.0)
        + visit("u2", 3600, "search")
        + visit("u3", 0, "direct", order=15.0),
    )
    day = T0.date()
    write_spend(warehouse, [
        spend_row(day, "Paid Search", "brand", 1000, 30, 50.0, "a"),
        spend_row(day, "Display", None, 0, 0, 12.0, "b"),  # spend, no sessions, no views
    ])  # fmt: skip
    visits = sessions(sessionize(user_events(warehouse)))
    got = records(campaign_kpis(visits, warehouse.table("spend")).to_pandas(), "channel")
    epoch = date(1970, 1, 1)
    search = got[("Paid Search", epoch)]
    assert search["sessions"] == 3 and search["conversions"] == 2 and search["new_customers"] == 1
    assert search["ctr"] == pytest.approx(0.03) and search["cpa"] == pytest.approx(25.0)
    assert search["cac"] == pytest.approx(50.0) and search["aov"] == pytest.approx(30.0)
    assert search["roas"] == pytest.approx(1.2) and search["roi"] == pytest.approx(0.2)
    assert search["conversion_rate"] == pytest.approx(2 / 3)
    display = got[("Display", epoch)]
    assert display["sessions"] == 0 and display["cost"] == 12.0
    assert display["cpa"] is None and display["ctr"] is None and display["cac"] is None
    assert display["conversion_rate"] is None and display["aov"] is None
    assert display["roas"] == 0.0 and display["roi"] == -1.0
    direct = got[("Direct", epoch)]
    assert direct["cost"] is None and direct["roas"] is None and direct["cpa"] is None
    assert direct["new_customers"] == 1 and direct["revenue"] == 15.0


def test_kpis_by_campaign_and_month_with_customers_from_before(warehouse: Warehouse) -> None:
    march, april = T0, T0 + timedelta(days=31)
    write_events(
        warehouse,
        visit("old", (march - T0).total_seconds(), "direct", order=5.0)
        + visit("old", (april - T0).total_seconds(), "social", order=8.0)
        + visit("new", (april - T0).total_seconds() + 7200, "social", order=9.0)
        + visit("browser", (april - T0).total_seconds(), "direct"),
    )
    write_spend(warehouse, [
        spend_row(april.date(), "Paid Social", "spring", 500, 10, 34.0, "a"),
        spend_row(april.date(), "Paid Social", None, 0, 0, 6.0, "b"),
    ])  # fmt: skip
    in_april = user_events(warehouse, Scope(start=datetime(2026, 4, 1, tzinfo=UTC)))
    visits = sessions(sessionize(in_april))
    firsts = first_orders(user_events(warehouse))
    got = campaign_kpis(visits, warehouse.table("spend"), "campaign", "month", firsts)
    rows = records(got.to_pandas(), "campaign")
    spring = rows[("spring", date(2026, 4, 1))]
    assert spring["sessions"] == 2 and spring["conversions"] == 2
    assert spring["new_customers"] == 1  # "old" ordered in March, before the scope
    assert spring["cac"] == pytest.approx(34.0) and spring["ctr"] == pytest.approx(0.02)
    not_set = rows[("(not set)", date(2026, 4, 1))]
    assert not_set["sessions"] == 1 and not_set["cost"] == 6.0 and not_set["ctr"] is None
    assert not_set["conversion_rate"] == 0.0 and not_set["cpa"] is None
    assert set(rows) == {("spring", date(2026, 4, 1)), ("(not set)", date(2026, 4, 1))}


def test_retention_with_churn_and_comebacks(warehouse: Warehouse) -> None:
    def order(user: str, month: int) -> dict:
        return event(user, datetime(2026, month, 10, tzinfo=UTC), "Order Completed", revenue=1.0)

    write_events(warehouse, [
        order("u1", 3), order("u1", 4), order("u1", 6),  # none in May: back in June
        order("u2", 3), order("u2", 3),  # two orders, one month
        order("u3", 4), order("u3", 5),
        event("u4", datetime(2026, 5, 2, tzinfo=UTC), path="/"),  # never orders
        event("u4", datetime(2026, 7, 2, tzinfo=UTC), path="/"),  # the log runs to July
    ])  # fmt: skip
    got = customer_retention(user_events(warehouse)).to_pandas()
    rows = [tuple(None if pd.isna(v) else v for v in r[1:]) for r in got.itertuples(index=False)]
    assert [day_of(d) for d in got.period] == [date(2026, m, 1) for m in (3, 4, 5, 6, 7)]
    assert rows == [
        (0, 2, 2, 0, 0, None, None),
        (2, 2, 1, 1, 0, 0.5, 0.5),
        (2, 1, 0, 1, 0, 0.5, 0.5),
        (1, 1, 0, 0, 1, 1.0, 0.0),  # u1 resurrected: counted as retained by the formula
        (1, 0, 0, 0, 0, 0.0, 1.0),
    ]


def test_missing_values_stay_missing(warehouse: Warehouse) -> None:
    """Missing measures stay null on every engine (Spark once turned them into NaN)."""
    write_events(warehouse, [*visit("u1", 0, "search"), event("u1", 60, "Signed Up")])
    write_spend(warehouse, [
        spend_row(T0.date(), "Paid Search", "brand", 400, None, 10.0, "a"),
        spend_row(T0.date(), "Paid Search", "brand", None, 4, 10.0, "b"),
    ])  # fmt: skip
    visits = sessions(sessionize(user_events(warehouse)))
    got = records(campaign_kpis(visits, warehouse.table("spend")).to_pandas(), "channel")
    search = got[("Paid Search", date(1970, 1, 1))]
    assert search["conversions"] == 1 and search["revenue"] == 0.0 and search["aov"] == 0.0
    assert search["impressions"] == 400 and search["clicks"] == 4
    assert search["ctr"] == pytest.approx(0.01) and search["roas"] == 0.0


def test_bad_arguments_are_refused(duck: Warehouse) -> None:
    visits = sessions(sessionize(user_events(duck)))
    with pytest.raises(InvalidInput, match="by"):
        campaign_kpis(visits, duck.table("spend"), by="source")
    with pytest.raises(InvalidInput, match="period"):
        campaign_kpis(visits, duck.table("spend"), period="year")
    with pytest.raises(InvalidInput, match="period"):
        customer_retention(user_events(duck), period="all")


def test_demo_ctr_and_cost_equal_the_spend_table(duck: Warehouse) -> None:
    from touchpoints.collect.demo import DemoParameters, load_demo

    load_demo(duck, DemoParameters(customers=200, months=2))
    visits = sessions(sessionize(user_events(duck)))
    for by in ("channel", "campaign"):
        got = campaign_kpis(visits, duck.table("spend"), by).to_pandas().set_index(by)
        sums = duck.query(
            f"SELECT {by} AS k, sum(cost) AS cost, sum(clicks) / sum(impressions) AS ctr "
            f"FROM spend GROUP BY {by}"
        ).to_pylist()
        assert len(sums) >= 3
        for row in sums:
            assert got.loc[row["k"], "cost"] == pytest.approx(row["cost"])
            assert got.loc[row["k"], "ctr"] == pytest.approx(row["ctr"])
            assert got.loc[row["k"], "sessions"] > 0
        unpaid = got.drop(index=[row["k"] for row in sums])
        assert unpaid.cost.isna().all() and unpaid.sessions.sum() > 0
