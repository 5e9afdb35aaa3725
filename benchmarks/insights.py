"""Insights benchmark: funnel, retention and web overview on DuckDB, against ClickHouse.

N synthetic web events (13 ISO weeks from Monday 2026-01-05, whole-second times) go
straight into the `events` table of a fresh DuckDB warehouse, through the same insert
as collected events. People come back in visits of a few events; a fifth of them stay
anonymous (anonymous id only), the rest carry a user id. Identities are not built, so
each event's user is `user:<user_id>` else `anon:<anonymous_id>` (`frame.user_events`).

On DuckDB the analyses run as in production, through the Ibis code:

1. `funnels.funnel`: Product Viewed → Product Added → Order Completed, window 7 days;
2. `retention.retention`: weekly, any event starts and returns, 12 periods;
3. `sessions.sessionize` → `sessions.sessions` → `web.web_overview` by day (web and app
   events, new users from `frame.first_seen`, as the web report does).

The events are then exported once to Parquet and the same questions are put to ClickHouse
(embedded, chdb) reading that file: `windowFunnel(604800)`, the `retention` aggregate,
and sessions with window functions (30-minute timeout, a new campaign starts a visit).
The answers must agree: funnel step counts, retention cohort sizes and classic counts for
every cell our report has, and the web overview's counts per day (rates to 1e-9).
Seconds are wall time of one run each, result fetched; the ratio is DuckDB / chdb.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from touchpoints.insights import funnels, retention, sessions, web
from touchpoints.insights.frame import Condition, Scope, first_seen, user_events
from touchpoints.insights.reports import WEB_CHANNELS
from touchpoints.warehouse import connect
from touchpoints.warehouse.schema import EVENTS

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
WEEKS = 13
FUNNEL = ("Product Viewed", "Product Added", "Order Completed")
WINDOW = timedelta(days=7)
PERIODS = 12
PATHS = ("/", "/shoes", "/shirts", "/bags", "/sale", "/p/1", "/p/2", "/p/3", "/p/4",
         "/cart", "/checkout", "/blog", "/about")  # fmt: skip
REFERRERS = ("https://www.google.com/", "https://news.example.org/a", "https://t.co/x")
CAMPAIGNS = (("google", "cpc", "spring"), ("newsletter", "email", "weekly"),
             ("facebook", "social", "spring"), ("bing", "cpc", "brand"))  # fmt: skip
CHUNK = 1_000_000


@dataclass
class InsightsResult:
    events: int
    people: int
    load_seconds: float
    export_seconds: float
    duckdb_funnel_s: float
    chdb_funnel_s: float
    funnel_ratio: float
    duckdb_retention_s: float
    chdb_retention_s: float
    retention_ratio: float
    duckdb_web_s: float
    chdb_web_s: float
    web_ratio: float
    funnel_users: list[int]
    retention_cells: int
    web_days: int
    sessions: int
    funnel_agrees: bool
    retention_agrees: bool
    web_agrees: bool


# -- synthetic events ---------------------------------------------------------------------


def _columns(events: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Per-event arrays: person, time (s since START), kind, page, campaign, referrer."""
    rng = np.random.default_rng(seed)
    span = WEEKS * 7 * 86400
    people = _people(events)
    joined = (rng.random(people) ** 1.3 * span).astype(np.int64)
    visits = max(events // 6, 1)
    # a few heavy people, many light ones; visits thin out after people join
    who = (people * rng.random(visits) ** 2).astype(np.int64)
    later = rng.exponential(14 * 86400, visits).astype(np.int64)
    room = np.maximum(span - joined[who], 1)
    visit_start = joined[who] + later % room
    visit = rng.integers(0, visits, events)
    person = who[visit]
    seconds = np.minimum(visit_start[visit] + rng.integers(0, 1500, events), span - 1)
    order = np.argsort(seconds, kind="stable")
    person, seconds, visit = person[order], seconds[order], visit[order]
    # kind: 0 page, 1..3 the funnel steps, 4 Signed Up, 5 Search
    intent = rng.random(people) ** 3
    r = rng.random(events)
    p = intent[person]
    kind = np.full(events, 5, np.int8)
    kind[r < 0.55] = 0
    kind[(r >= 0.55) & (r < 0.75)] = 1
    kind[(r >= 0.75) & (r < 0.75 + 0.12 * p)] = 2
    kind[(r >= 0.88) & (r < 0.88 + 0.06 * p)] = 3
    kind[(r >= 0.95) & (r < 0.96)] = 4
    page = rng.integers(0, len(PATHS), events)
    # four visits in ten come from a campaign, which a quarter of their page views carry
    visit_campaign = rng.integers(-6, len(CAMPAIGNS), visits)
    tagged = (kind == 0) & (rng.random(events) < 0.25) & (visit_campaign[visit] >= 0)
    campaign = np.where(tagged, visit_campaign[visit], -1)
    referrer = np.where((kind == 0) & (rng.random(events) < 0.2),
                        rng.integers(0, len(REFERRERS), events), -1)  # fmt: skip
    return {
        "person": person,
        "seconds": seconds,
        "kind": kind,
        "page": page,
        "campaign": campaign,
        "referrer": referrer,
        "anonymous": (person % 5 == 0),
        "revenue": np.round(rng.uniform(10, 300, events), 2),
    }


def _people(events: int) -> int:
    return max(events // 40, 10)


def _pick(values: tuple[str, ...], index: np.ndarray, valid: np.ndarray) -> pa.Array:
    """values[index] where `valid`, else null."""
    return pa.array(values).take(pa.array(index, mask=~valid))


def _prefixed(prefix: str, numbers: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    text = pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")
    return text if valid is None else pc.if_else(pa.array(valid), text, None)


def _chunk(c: dict[str, np.ndarray], lo: int, hi: int) -> pa.Table:
    """Rows lo..hi as the `events` table holds them (what normalisation would store)."""
    kind, page = c["kind"][lo:hi], c["page"][lo:hi]
    campaign, referrer = c["campaign"][lo:hi], c["referrer"][lo:hi]
    person, anonymous = c["person"][lo:hi], c["anonymous"][lo:hi]
    n = hi - lo
    is_page, is_track = kind == 0, kind > 0
    micros = (int(START.timestamp()) + c["seconds"][lo:hi]) * 1_000_000
    stamp = pa.array(micros, pa.timestamp("us", tz="UTC"))
    names = ("", *FUNNEL, "Signed Up", "Search")
    path = _pick(PATHS, page, is_page)
    url = pc.binary_join_element_wise("https://shop.example.com", path, "")
    tagged = campaign >= 0
    conversion = kind == 3
    product = _prefixed('{"product_id":"P', page, is_track)
    properties = pc.if_else(
        pa.array(is_page),
        pc.binary_join_element_wise('{"path":"', path, '","url":"', url, '"}', ""),
        pc.binary_join_element_wise(product, '"}', ""),
    )
    columns = {
        "message_id": _prefixed("m", np.arange(lo, hi)),
        "source_id": pa.array(["src_bench"] * n),
        "type": pa.array(np.where(is_page, "page", "track")),
        "event": _pick(names, kind, is_track),
        "anonymous_id": _prefixed("a", person),
        "user_id": _prefixed("u", person, ~anonymous),
        "timestamp": stamp,
        "original_timestamp": stamp,
        "sent_at": stamp,
        "received_at": stamp,
        "channel": pa.array(["web"] * n),
        "page_url": url,
        "page_path": path,
        "page_referrer": _pick(REFERRERS, referrer, referrer >= 0),
        "utm_source": _pick(tuple(x[0] for x in CAMPAIGNS), campaign, tagged),
        "utm_medium": _pick(tuple(x[1] for x in CAMPAIGNS), campaign, tagged),
        "utm_campaign": _pick(tuple(x[2] for x in CAMPAIGNS), campaign, tagged),
        "user_agent": pa.array(["Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"] * n),
        "revenue": pa.array(c["revenue"][lo:hi], mask=~conversion),
        "currency": _pick(("USD",), np.zeros(n, np.int64), conversion),
        "properties": properties,
        "context": pa.array(['{"library":{"name":"bench","version":"1.0"}}'] * n),
    }
    schema = EVENTS.to_pyarrow()
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


# -- ClickHouse (chdb) ----------------------------------------------------------------------

_USER = "assumeNotNull(coalesce(concat('user:', user_id), concat('anon:', anonymous_id)))"


def _chdb_funnel(chdb: Any, source: str) -> list[int]:
    conditions = ", ".join(f"type = 'track' AND event = '{name}'" for name in FUNNEL)
    found = chdb.query(
        f"SELECT level, count() AS users FROM (SELECT {_USER} AS u, "
        f"windowFunnel({int(WINDOW.total_seconds())})(t, {conditions}) AS level "
        f"FROM {source} GROUP BY u) WHERE level > 0 GROUP BY level",
        "ArrowTable",
    )
    by_level = dict(zip(found["level"].to_pylist(), found["users"].to_pylist(), strict=True))
    return [sum(v for lv, v in by_level.items() if lv >= k) for k in range(1, len(FUNNEL) + 1)]


def _chdb_retention(chdb: Any, source: str) -> dict[int, list[int]]:
    """Cohort week index → [cohort size, users back in week +1, …, +PERIODS]."""
    conditions = ", ".join(f"w = cw + {n}" for n in range(PERIODS + 1))
    found = chdb.query(
        f"WITH e AS (SELECT {_USER} AS u, intDiv(intDiv(assumeNotNull(t), 86400) + 3, 7) AS w "
        f"FROM {source}), cohorts AS (SELECT u, min(w) AS cw FROM e GROUP BY u) "
        f"SELECT cw, sumForEach(r) AS cells FROM (SELECT u, cw, retention({conditions}) AS r "
        f"FROM e JOIN cohorts USING (u) GROUP BY u, cw) GROUP BY cw",
        "ArrowTable",
    )
    return dict(zip(found["cw"].to_pylist(), found["cells"].to_pylist(), strict=True))


def _chdb_web(chdb: Any, source: str) -> pa.Table:
    """Sessions as `sessions.sessionize` cuts them, then the web overview by UTC day."""
    channels = ", ".join(f"'{c}'" for c in WEB_CHANNELS)
    timeout = int(sessions.DEFAULT_TIMEOUT.total_seconds())
    conversions = ", ".join(f"'{c}'" for c in sessions.DEFAULT_CONVERSIONS)
    order = "PARTITION BY u ORDER BY t, message_id"
    return chdb.query(
        f"""
        WITH firsts AS (SELECT {_USER} AS fu, min(t) AS first FROM {source} GROUP BY fu),
        e AS (
            SELECT {_USER} AS u, t, message_id, type, event, revenue,
                utm_source IS NOT NULL OR utm_medium IS NOT NULL OR utm_campaign IS NOT NULL
                    AS tagged,
                if(tagged, concat(ifNull(utm_source, ''), '\\x1f', ifNull(utm_medium, ''),
                    '\\x1f', ifNull(utm_campaign, '')), NULL) AS campaign
            FROM {source} WHERE channel IN ({channels})
        ),
        steps AS (
            SELECT *,
                row_number() OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                    AS seq,
                lagInFrame(t) OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                    AS prev_t,
                anyLast(campaign) OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    AS in_force
            FROM e
        ),
        starts AS (
            SELECT *, sum(toUInt64(seq = 1 OR t - prev_t > {timeout}
                    OR (tagged AND (in_force IS NULL OR in_force != campaign))))
                OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
            FROM steps
        ),
        visits AS (
            SELECT u, session, min(t) AS v_start, max(t) - min(t) AS v_duration,
                count() AS v_events, countIf(type IN ('page', 'screen')) AS v_views,
                countIf(type = 'track' AND event IN ({conversions})) AS v_conversions,
                sumIf(revenue, type = 'track' AND event IN ({conversions})) AS v_revenue
            FROM starts GROUP BY u, session
        )
        SELECT intDiv(v_start, 86400) AS day, uniqExact(u) AS users,
            uniqExactIf(u, intDiv(first, 86400) = day) AS new_users, count() AS sessions,
            sum(v_views) AS pageviews, avg(v_duration) AS avg_session_seconds,
            avg(v_views = 1 AND v_events = 1) AS bounce_rate,
            avg(v_duration > {sessions.ENGAGED_SECONDS} OR v_conversions > 0 OR v_views >= 2)
                AS engagement_rate,
            sum(v_conversions) AS conversions, sum(ifNull(v_revenue, 0)) AS revenue
        FROM visits JOIN firsts ON visits.u = firsts.fu GROUP BY day ORDER BY day
        """,
        "ArrowTable",
    )


# -- the comparison -----------------------------------------------------------------------


def _timed(run: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = run()
    return value, round(time.perf_counter() - start, 3)


def _week_index(day: date) -> int:
    return (day.toordinal() - date(1970, 1, 1).toordinal() + 3) // 7


def _retention_agrees(ours: pa.Table, theirs: dict[int, list[int]]) -> bool:
    seen = set()
    for row in ours.to_pylist():
        cells = theirs.get(_week_index(row["cohort"]))
        n = row["period_number"]
        seen.add(_week_index(row["cohort"]))
        if cells is None or cells[0] != row["cohort_size"] or cells[n] != row["users_classic"]:
            print(f"  retention differs: {row} vs {cells}")
            return False
    return seen == set(theirs)


def _web_agrees(ours: pa.Table, theirs: pa.Table) -> bool:
    epoch = date(1970, 1, 1).toordinal()
    mine = {r["period"].toordinal() - epoch: r for r in ours.to_pylist()}
    other = {r["day"]: r for r in theirs.to_pylist()}
    if set(mine) != set(other):
        print(f"  web overview days differ: {len(mine)} vs {len(other)}")
        return False
    exact = ("users", "new_users", "sessions", "pageviews", "conversions")
    close = ("avg_session_seconds", "bounce_rate", "engagement_rate", "revenue")
    for day, row in mine.items():
        for name in exact:
            if row[name] != other[day][name]:
                print(f"  web {name} differs on day {day}: {row[name]} vs {other[day][name]}")
                return False
        for name in close:
            if not math.isclose(row[name], other[day][name], rel_tol=1e-9, abs_tol=1e-9):
                print(f"  web {name} differs on day {day}: {row[name]} vs {other[day][name]}")
                return False
    return True


def run_insights(events: int = 10_000_000) -> InsightsResult:
    import chdb

    with tempfile.TemporaryDirectory() as tmp:
        warehouse = connect(f"duckdb:///{Path(tmp) / 'insights.duckdb'}")
        start = time.perf_counter()
        columns = _columns(events)
        for lo in range(0, events, CHUNK):
            warehouse.insert("events", _chunk(columns, lo, min(lo + CHUNK, events)))
        del columns
        load = round(time.perf_counter() - start, 2)
        warehouse.backend.con.execute("CHECKPOINT")

        steps = [funnels.Step(name) for name in FUNNEL]
        web_scope = Scope(where=tuple(Condition("channel", c) for c in WEB_CHANNELS))
        report, duck_funnel = _timed(
            lambda: funnels.funnel(user_events(warehouse), steps, WINDOW).to_pyarrow()
        )
        cohorts, duck_retention = _timed(
            lambda: retention.retention(
                user_events(warehouse), "week", periods=PERIODS
            ).to_pyarrow()
        )

        def overview() -> pa.Table:
            visits = sessions.sessions(sessions.sessionize(user_events(warehouse, web_scope)))
            return web.web_overview(visits, "day", None, first_seen(warehouse)).to_pyarrow()

        days, duck_web = _timed(overview)

        parquet = Path(tmp) / "events.parquet"
        start = time.perf_counter()
        warehouse.backend.con.execute(
            "COPY (SELECT message_id, user_id, anonymous_id, channel, type, event, "
            "(epoch_us(timestamp) // 1000000)::UBIGINT AS t, page_path, utm_source, "
            f"utm_medium, utm_campaign, revenue FROM events) TO '{parquet}' (FORMAT parquet)"
        )
        export = round(time.perf_counter() - start, 2)
        warehouse.close()

        source = f"file('{parquet}', Parquet)"
        their_funnel, ch_funnel = _timed(lambda: _chdb_funnel(chdb, source))
        their_cohorts, ch_retention = _timed(lambda: _chdb_retention(chdb, source))
        their_days, ch_web = _timed(lambda: _chdb_web(chdb, source))

    our_funnel = report["users"].to_pylist()
    funnel_agrees = our_funnel == their_funnel
    if not funnel_agrees:
        print(f"  funnel differs: {our_funnel} vs {their_funnel}")
    return InsightsResult(
        events=events,
        people=_people(events),
        load_seconds=load,
        export_seconds=export,
        duckdb_funnel_s=duck_funnel,
        chdb_funnel_s=ch_funnel,
        funnel_ratio=round(duck_funnel / ch_funnel, 2),
        duckdb_retention_s=duck_retention,
        chdb_retention_s=ch_retention,
        retention_ratio=round(duck_retention / ch_retention, 2),
        duckdb_web_s=duck_web,
        chdb_web_s=ch_web,
        web_ratio=round(duck_web / ch_web, 2),
        funnel_users=our_funnel,
        retention_cells=cohorts.num_rows,
        web_days=days.num_rows,
        sessions=int(pc.sum(days["sessions"]).as_py()),
        funnel_agrees=funnel_agrees,
        retention_agrees=_retention_agrees(cohorts, their_cohorts),
        web_agrees=_web_agrees(days, their_days),
    )
