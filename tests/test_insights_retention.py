"""Retention and lifecycle: checked against plain-Python loops on random logs, against
ClickHouse's `retention` aggregate (chdb), and at the edges: a user missing a period,
period boundaries (Sunday night, month ends), chosen start and return events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from types import ModuleType

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, random_log, settings_for, write_events
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import user_events
from touchpoints.insights.retention import (
    LIFECYCLE_COLUMNS,
    RETENTION_COLUMNS,
    lifecycle,
    retention,
)
from touchpoints.warehouse import Warehouse

DAY = 86400


# --- the reference: plain loops over the rows ------------------------------------------


def period_of(when: datetime, period: str) -> tuple[int, date]:
    """(index, first day) of the period holding `when`, in UTC."""
    d = when.astimezone(UTC).date()
    if period == "week":
        d -= timedelta(days=d.weekday())
        return (d.toordinal() - 1) // 7, d  # date(1, 1, 1) was a Monday
    if period == "month":
        d = d.replace(day=1)
        return d.year * 12 + d.month - 1, d
    return d.toordinal(), d


def day_of(index: int, period: str) -> date:
    if period == "week":
        return date.fromordinal(index * 7 + 1)
    if period == "month":
        return date(index // 12, index % 12 + 1, 1)
    return date.fromordinal(index)


def hits(row: dict, name: str | None) -> bool:
    return name is None or (row["type"] == "track" and row["name"] == name)


def reference_retention(
    rows: list[dict], period: str, start: str | None = None, back: str | None = None,
    periods: int = 12,
) -> dict[tuple[date, int], tuple[int, int, int]]:  # fmt: skip
    """{(cohort, N): (cohort_size, users_classic, users_unbounded)}."""
    last = max(period_of(r["when"], period)[0] for r in rows)
    cohort: dict[str, int] = {}
    returns: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        index = period_of(r["when"], period)[0]
        if hits(r, start):
            cohort[r["user"]] = min(index, cohort.get(r["user"], index))
        if hits(r, back):
            returns[r["user"]].add(index)
    members: dict[int, list[str]] = defaultdict(list)
    for user, c in cohort.items():
        members[c].append(user)
    cells = {}
    for c, users in members.items():
        for n in range(min(periods, last - c) + 1):
            classic = sum(c + n in returns[u] for u in users)
            unbounded = sum(any(p >= c + n for p in returns[u]) for u in users)
            cells[(day_of(c, period), n)] = (len(users), classic, unbounded)
    return cells


def reference_lifecycle(rows: list[dict], period: str) -> dict[date, tuple[int, int, int, int]]:
    """{period: (new, returning, resurrected, dormant)} from the first to the last period."""
    active: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        active[period_of(r["when"], period)[0]].add(r["user"])
    first: dict[str, int] = {}
    for p in sorted(active):
        for user in active[p]:
            first.setdefault(user, p)
    out = {}
    for p in range(min(active), max(active) + 1):
        now, before = active.get(p, set()), active.get(p - 1, set())
        new = {u for u in now if first[u] == p}
        out[day_of(p, period)] = (
            len(new), len(now & before), len(now - before - new), len(before - now)
        )  # fmt: skip
    return out


# --- running the analyses ---------------------------------------------------------------


def cells_of(table: pa.Table) -> dict[tuple[date, int], tuple[int, int, int]]:
    assert table.column_names == list(RETENTION_COLUMNS)
    cells = {}
    for row in table.to_pylist():
        size = row["cohort_size"]
        assert row["rate_classic"] == pytest.approx(row["users_classic"] / size)
        assert row["rate_unbounded"] == pytest.approx(row["users_unbounded"] / size)
        key = (row["cohort"], row["period_number"])
        assert key not in cells
        cells[key] = (size, row["users_classic"], row["users_unbounded"])
    assert list(cells) == sorted(cells)  # ordered by cohort, then period number
    return cells


def phases_of(table: pa.Table) -> dict[date, tuple[int, int, int, int]]:
    assert table.column_names == list(LIFECYCLE_COLUMNS)
    rows = table.to_pylist()
    assert [r["period"] for r in rows] == sorted(r["period"] for r in rows)
    return {r["period"]: tuple(r[c] for c in LIFECYCLE_COLUMNS[1:]) for r in rows}


def run_retention(warehouse: Warehouse, **kw) -> dict[tuple[date, int], tuple[int, int, int]]:
    return cells_of(retention(user_events(warehouse), **kw).to_pyarrow())


def run_lifecycle(warehouse: Warehouse, period: str) -> dict[date, tuple[int, int, int, int]]:
    return phases_of(lifecycle(user_events(warehouse), period).to_pyarrow())


# --- random logs against the reference --------------------------------------------------

#: Spans of several periods; a 3-hour grid from Monday 09:00 hits midnights, Monday
#: 00:00 and the first of the month.
SPANS = {"day": 10 * DAY, "week": 8 * 7 * DAY, "month": 150 * DAY}
logs = st.sampled_from(sorted(SPANS)).flatmap(
    lambda p: st.tuples(
        st.just(p), random_log(users=5, max_events=30, span_s=SPANS[p], tick_s=3 * 3600)
    )
)
events_or_any = st.sampled_from([None, "a", "b"])


def test_retention_and_lifecycle_match_the_reference(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine, duckdb_examples=30)
    @given(logs, events_or_any, events_or_any, st.integers(0, 9))
    def check(log: tuple[str, list[dict]], start: str | None, back: str | None, n: int) -> None:
        period, rows = log
        warehouse.truncate("events")
        write_events(warehouse, rows)
        events = user_events(warehouse)
        got = retention(events, period, start_event=start, return_event=back, periods=n)
        assert cells_of(got.to_pyarrow()) == reference_retention(rows, period, start, back, n)
        expected = reference_lifecycle(rows, period)
        assert phases_of(lifecycle(events, period).to_pyarrow()) == expected

    check()


# --- edges by hand ----------------------------------------------------------------------


def test_a_user_missing_a_period_counts_in_unbounded_not_classic(warehouse: Warehouse) -> None:
    w = 7 * DAY
    write_events(
        warehouse,
        [
            event("steady", 0), event("steady", w), event("steady", 2 * w), event("steady", 3 * w),
            event("gap", 0), event("gap", 3 * w),  # nothing in weeks 1 and 2
            event("once", 0),  # never back
            event("late", w), event("late", w + 1),  # cohort of week 1, never back
        ],
    )  # fmt: skip
    cells = run_retention(warehouse, periods=5)
    week0, week1 = T0.date(), T0.date() + timedelta(days=7)
    assert cells == {
        (week0, 0): (3, 3, 3),
        (week0, 1): (3, 1, 2),  # gap is not back in week 1, but is later
        (week0, 2): (3, 1, 2),
        (week0, 3): (3, 2, 2),  # the last week of the data: no row for N = 4 or 5
        (week1, 0): (1, 1, 1),
        (week1, 1): (1, 0, 0),  # nobody back: a row with zero users
        (week1, 2): (1, 0, 0),
    }
    assert run_retention(warehouse, periods=0) == {
        (week0, 0): (3, 3, 3),
        (week1, 0): (1, 1, 1),
    }
    assert run_lifecycle(warehouse, "week") == {
        week0: (3, 0, 0, 0),
        week0 + timedelta(days=7): (1, 1, 0, 2),  # late is new; gap and once go dormant
        week0 + timedelta(days=14): (0, 1, 0, 1),  # late goes dormant
        week0 + timedelta(days=21): (0, 1, 1, 0),  # gap is resurrected
    }


def test_week_boundaries_sunday_night_and_monday_midnight(warehouse: Warehouse) -> None:
    sunday = datetime(2026, 3, 8, 23, 59, 59, tzinfo=UTC)
    monday = datetime(2026, 3, 9, 0, 0, tzinfo=UTC)
    write_events(
        warehouse,
        [
            event("a", datetime(2026, 3, 2, 0, 0, tzinfo=UTC)), event("a", sunday),
            event("b", sunday), event("b", monday),
            event("c", monday), event("c", datetime(2026, 3, 15, 23, 59, 59, tzinfo=UTC)),
        ],
    )  # fmt: skip
    w0, w1 = date(2026, 3, 2), date(2026, 3, 9)
    assert run_retention(warehouse, period="week") == {
        (w0, 0): (2, 2, 2), (w0, 1): (2, 1, 1),  # a only in week 0; b back on Monday
        (w1, 0): (1, 1, 1),
    }  # fmt: skip
    assert run_lifecycle(warehouse, "week") == {w0: (2, 0, 0, 0), w1: (1, 1, 0, 1)}
    # By day, Sunday and Monday are consecutive days; c's Sunday is a week later.
    cells = run_retention(warehouse, period="day", periods=7)
    assert cells[(date(2026, 3, 8), 1)] == (1, 1, 1)  # b
    assert cells[(date(2026, 3, 9), 6)] == (1, 1, 1)  # c on Sunday the 15th
    assert (date(2026, 3, 9), 7) not in cells  # after the last day of the data
    assert cells[(date(2026, 3, 2), 6)] == (1, 1, 1)  # a: Monday 00:00 then Sunday 23:59:59
    assert cells[(date(2026, 3, 2), 5)] == (1, 0, 1)


def test_month_ends(warehouse: Warehouse) -> None:
    def at(*ymd_hms: int) -> datetime:
        return datetime(*ymd_hms, tzinfo=UTC)

    write_events(
        warehouse,
        [
            event("jan", at(2026, 1, 31, 23, 59, 59)), event("jan", at(2026, 2, 1)),
            event("feb", at(2026, 2, 1)), event("feb", at(2026, 2, 28, 23, 59, 59)),
            event("feb", at(2026, 4, 30, 23, 59, 59)),
            event("mar", at(2026, 3, 1)),
        ],
    )  # fmt: skip
    jan, feb, mar, apr = (date(2026, m, 1) for m in (1, 2, 3, 4))
    assert run_retention(warehouse, period="month", periods=3) == {
        (jan, 0): (1, 1, 1), (jan, 1): (1, 1, 1), (jan, 2): (1, 0, 0), (jan, 3): (1, 0, 0),
        (feb, 0): (1, 1, 1), (feb, 1): (1, 0, 1), (feb, 2): (1, 1, 1),
        (mar, 0): (1, 1, 1), (mar, 1): (1, 0, 0),
    }  # fmt: skip
    assert run_lifecycle(warehouse, "month") == {
        jan: (1, 0, 0, 0), feb: (1, 1, 0, 0), mar: (1, 0, 0, 2), apr: (0, 0, 1, 1),
    }  # fmt: skip


def test_chosen_start_and_return_events(warehouse: Warehouse) -> None:
    w = 7 * DAY
    write_events(
        warehouse,
        [
            # bought before signing up in the same week: counts for N = 0
            event("early", 0, "Order Completed"),
            event("early", 3600, "Signed Up", properties={"plan": "pro"}),
            event("early", w + 5, "Product Viewed"),  # not a return event
            event("early", 2 * w, "Order Completed"),
            # an order in the week before the cohort is ignored
            event("prior", 0, "Order Completed"),
            event("prior", w, "Signed Up", properties={"plan": "free"}),
            event("prior", w + 60, "Order Completed"),
            event("browser", 0, "Product Viewed"),  # never signed up: in no cohort
            event("browser", w, "Order Completed"),
            event("nobuy", 0, "Signed Up"), event("nobuy", 2 * w, path="/"),
        ],
    )  # fmt: skip
    w0, w1 = T0.date(), T0.date() + timedelta(days=7)
    cells = run_retention(warehouse, start_event="Signed Up", return_event="Order Completed")
    assert cells == {
        (w0, 0): (2, 1, 1), (w0, 1): (2, 0, 1), (w0, 2): (2, 1, 1),
        (w1, 0): (1, 1, 1), (w1, 1): (1, 0, 0),
    }  # fmt: skip
    # With no return event, any event returns: N = 0 is 1.0 by definition.
    assert run_retention(warehouse, start_event="Signed Up") == {
        (w0, 0): (2, 2, 2), (w0, 1): (2, 1, 2), (w0, 2): (2, 2, 2),
        (w1, 0): (1, 1, 1), (w1, 1): (1, 0, 0),
    }  # fmt: skip
    # A return event nobody did: every cell is there, with zero users (not missing).
    assert run_retention(warehouse, start_event="Signed Up", return_event="Refunded") == {
        (w0, 0): (2, 0, 0), (w0, 1): (2, 0, 0), (w0, 2): (2, 0, 0),
        (w1, 0): (1, 0, 0), (w1, 1): (1, 0, 0),
    }  # fmt: skip
    # Steps with conditions (nobuy's sign-up has no plan) and page views, as in funnels.
    pro = run_retention(
        warehouse, start_event="Signed Up[plan=pro]", return_event="Order Completed"
    )
    assert pro == {(w0, 0): (1, 1, 1), (w0, 1): (1, 0, 1), (w0, 2): (1, 1, 1)}
    assert run_retention(warehouse, start_event="page:/", return_event="Signed Up") == {
        (date(2026, 3, 16), 0): (1, 0, 0),
    }


#: ClickHouse's own periods of a UTC DateTime64 `t`: (index, first day), as `period_of`.
CLICKHOUSE_PERIODS = {
    "day": ("toRelativeDayNum(t)", "toDate(t)"),
    "week": ("intDiv(toRelativeDayNum(toMonday(t)), 7)", "toMonday(t)"),
    "month": ("toRelativeMonthNum(t)", "toStartOfMonth(t)"),
}


def clickhouse_retention(
    chdb: ModuleType, rows: list[dict], period: str, start: str | None, back: str | None,
    periods: int,
) -> dict[tuple[date, int], tuple[int, int, int]]:  # fmt: skip
    """The cells by ClickHouse: per user, `retention(c0, c1, …)` where c0 is a start
    event in the cohort period and c(N+1) a return event in period cohort+N (classic) or
    at or after it (unbounded); `sumForEach` per cohort then gives (cohort_size,
    users at N = 0, users at N = 1, …). Periods, cohorts and the last period are
    ClickHouse's."""
    index, first_day = CLICKHOUSE_PERIODS[period]
    table = pa.table(  # noqa: F841 (read by chdb's Python() table function)
        {
            "u": [r["user"] for r in rows],
            "t": pa.array([r["when"] for r in rows], pa.timestamp("us", tz="UTC")),
            "e": [r["name"] or "" for r in rows],
        }
    )
    s = "1" if start is None else f"ifNull(e = '{start}', 0)"
    r = "1" if back is None else f"ifNull(e = '{back}', 0)"
    classic = ", ".join(f"r AND p = c + {n}" for n in range(periods + 1))
    unbounded = ", ".join(f"r AND p >= c + {n}" for n in range(periods + 1))
    found = chdb.query(
        f"WITH ev AS (SELECT u, {index} AS p, {first_day} AS d, toUInt8({s}) AS s,"
        f"             toUInt8({r}) AS r FROM Python(table)),"
        "  cohorts AS (SELECT u, minIf(p, s = 1) AS c, minIf(d, s = 1) AS cohort FROM ev"
        "              GROUP BY u HAVING countIf(s = 1) > 0)"
        " SELECT cohort, c, (SELECT max(p) FROM ev) AS last,"
        "  sumForEach(rc) AS classic, sumForEach(ru) AS unbounded FROM ("
        f"   SELECT u, c, cohort, retention(s AND p = c, {classic}) AS rc,"
        f"   retention(s AND p = c, {unbounded}) AS ru"
        "   FROM ev JOIN cohorts USING (u) GROUP BY u, c, cohort)"
        " GROUP BY cohort, c",
        "ArrowTable",
    ).to_pylist()
    cells = {}
    for row in found:
        c, classic_users, unbounded_users = row["c"], row["classic"], row["unbounded"]
        size = classic_users[0]
        for n in range(min(periods, row["last"] - c) + 1):
            cells[(row["cohort"], n)] = (size, classic_users[n + 1], unbounded_users[n + 1])
    return cells


def log_for_clickhouse(period: str, seed: int) -> list[dict]:
    """60 users with 1 to 8 events each on a 3-hour grid over several periods (so on
    midnights, Mondays and firsts of the month); some return before they start."""
    rng = np.random.default_rng(seed)
    ticks = SPANS[period] // (3 * 3600)
    rows = []
    for u in range(60):
        for t in rng.integers(0, ticks + 1, rng.integers(1, 9)):
            name = str(rng.choice(["start", "back", "back", "other"]))
            rows.append(event(f"u{u}", float(t) * 3 * 3600, name))
    return rows


def test_retention_matches_clickhouse(warehouse: Warehouse, engine: str) -> None:
    """The same logs through ClickHouse's `retention` aggregate (embedded, via chdb):
    every period on DuckDB, with any event and with chosen start and return events; one
    case on Spark."""
    chdb = pytest.importorskip("chdb")
    events = [(None, None), ("start", "back")]  # the mixes are the random logs' part
    everything = [(p, s, b) for p in sorted(SPANS) for s, b in events]
    cases = everything if engine == "duckdb" else [("week", "start", "back")]
    rows, written = [], None
    for period, start, back in cases:
        if period != written:  # one log per period, cases of a period in a row
            rows, written = log_for_clickhouse(period, seed=len(period)), period
            warehouse.truncate("events")
            write_events(warehouse, rows)
        theirs = clickhouse_retention(chdb, rows, period, start, back, periods=6)
        ours = run_retention(
            warehouse, period=period, start_event=start, return_event=back, periods=6
        )
        assert ours == theirs, (period, start, back)
        # The data exercise the cells: users missing a period but back later.
        assert len(theirs) > 12
        assert any(c[1] < c[2] for c in theirs.values())


def test_bad_arguments(warehouse: Warehouse) -> None:
    events = user_events(warehouse)
    for bad in ("year", "all", ""):
        with pytest.raises(InvalidInput):
            retention(events, bad)
        with pytest.raises(InvalidInput):
            lifecycle(events, bad)
    for periods in (-1, 1.5, True):
        with pytest.raises(InvalidInput):
            retention(events, periods=periods)  # type: ignore[arg-type]
