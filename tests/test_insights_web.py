"""Web analytics: the overview and top pages checked against a plain-Python replay on random
logs (both engines, every period, every kind of breakdown, new users with and without the
whole log's `first_seen`), and at the edges: sessions across midnight, week and month ends,
new and returning users, the default channel grouping, the referrer host, user agents."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, kind_event, settings_for, write_events
from tests.test_insights_sessions import GOOGLE_SPRING, replay_sessions, summarize, view_of
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Scope, first_seen, user_events
from touchpoints.insights.sessions import sessionize, sessions
from touchpoints.insights.useragent import parse_user_agent
from touchpoints.insights.web import top_pages, web_overview
from touchpoints.warehouse import Warehouse

DAY = timedelta(days=1)

# Real user agents and what they are (uap-core's family names).
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
TECHNOLOGY = {
    CHROME_WINDOWS: ("desktop", "Chrome", "Windows"),
    IPHONE_SAFARI: ("mobile", "Mobile Safari", "iOS"),
    IPAD_SAFARI: ("tablet", "Mobile Safari", "iOS"),
    GOOGLEBOT: ("bot", "Googlebot", "Other"),
    ANDROID_PHONE: ("mobile", "Chrome Mobile", "Android"),
    ANDROID_TABLET: ("tablet", "Chrome", "Android"),
    FIREFOX_MAC: ("desktop", "Firefox", "Mac OS X"),
    None: ("unknown", "unknown", "unknown"),
}


# --- the replay -------------------------------------------------------------------------

# The random logs' sources and referrer hosts, classified by hand.
SEARCH = {"google", "google.com", "bing.com"}
SOCIAL = {"facebook", "l.facebook.com"}
HOSTS = {
    None: None,
    "https://www.google.com/search?q=shoes": "google.com",
    "https://l.facebook.com/": "l.facebook.com",
    "https://www.bing.com/": "bing.com",
    "https://blog.example.org/post": "blog.example.org",
}


def expected_channel(source: str | None, medium: str | None, referrer: str | None) -> str:
    """The default channel grouping of the channels module's docstring, for the random
    logs' vocabulary."""
    src, med, host = (source or "").lower(), (medium or "").lower(), HOSTS[referrer]
    search = src in SEARCH or host in SEARCH
    social = src in SOCIAL or host in SOCIAL
    paid = med in ("cpc", "ppc", "cpm") or med.startswith("paid")
    if src in ("", "(direct)") and med in ("", "(none)") and host is None:
        return "Direct"
    if med in ("paidsearch", "sem") or (search and paid):
        return "Paid Search"
    if med in ("paid_social", "paidsocial") or (social and paid):
        return "Paid Social"
    if med in ("display", "cpm"):
        return "Display"
    if med == "affiliate":
        return "Affiliates"
    if "email" in (src, med) or "newsletter" in (src, med):
        return "Email"
    if social or med == "social":
        return "Organic Social"
    if search or med == "organic":
        return "Organic Search"
    if med == "referral" or host is not None:
        return "Referral"
    return "Other"


def period_of(when: datetime, period: str) -> date:
    day = when.astimezone(UTC).date()
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "all":
        return date(1970, 1, 1)
    return day


def replay_session_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every session of the rows, summarised, with its user, breakdown columns and pages."""
    out = []
    for user, user_sessions in replay_sessions(rows).items():
        for session in user_sessions:
            s = summarize(session)
            ua = session[0]["user_agent"]
            s.update(
                user=user,
                channel_group=expected_channel(s["utm_source"], s["utm_medium"], s["referrer"]),
                source=s["utm_source"],
                referrer_host=HOSTS[s["referrer"]],
                device=TECHNOLOGY[ua][0],
                browser=TECHNOLOGY[ua][1],
                os=TECHNOLOGY[ua][2],
                pages=[view_of(r) for r in session if r["type"] in ("page", "screen")],
            )
            out.append(s)
    return out


def replay_overview(
    rows: list[dict[str, Any]], period: str, by: str | None, first: dict[str, datetime] | None
) -> dict[tuple, tuple]:
    """web_overview by its docstring: (period, value) → (users, new, returning, sessions,
    pageviews, pages per session, mean duration, bounce rate, engagement rate, conversions,
    revenue)."""
    all_sessions = replay_session_rows(rows)
    if first is None:
        first = {}
        for s in all_sessions:
            first[s["user"]] = min(first.get(s["user"], s["start"]), s["start"])
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for s in all_sessions:
        key = (period_of(s["start"], period), s[by] if by else None)
        groups.setdefault(key, []).append(s)
    out = {}
    for key, group in groups.items():
        users = {s["user"] for s in group}
        new = {u for u in users if period_of(first[u], period) == key[0]}
        n = len(group)
        views = sum(s["views"] for s in group)
        out[key] = (
            len(users), len(new), len(users) - len(new), n, views, views / n,
            sum(s["duration_s"] for s in group) / n,
            sum(s["bounced"] for s in group) / n,
            sum(s["engaged"] for s in group) / n,
            sum(s["conversions"] for s in group),
            sum(s["revenue"] for s in group),
        )  # fmt: skip
    return out


def replay_top_pages(rows: list[dict[str, Any]], limit: int) -> list[tuple]:
    all_sessions = replay_session_rows(rows)
    views: Counter = Counter()
    users: dict[str, set[str]] = {}
    for s in all_sessions:
        for page in s["pages"]:
            views[page] += 1
            users.setdefault(page, set()).add(s["user"])
    entrances = Counter(s["entry_page"] for s in all_sessions)
    exits = Counter(s["exit_page"] for s in all_sessions)
    ranked = sorted(views, key=lambda page: (-views[page], page))[:limit]
    return [
        (p, views[p], len(users[p]), entrances[p], exits[p], exits[p] / views[p]) for p in ranked
    ]


# --- what the code says ------------------------------------------------------------------

COLUMNS = ("users", "new_users", "returning_users", "sessions", "pageviews",
           "pages_per_session", "avg_session_seconds", "bounce_rate", "engagement_rate",
           "conversions", "revenue")  # fmt: skip


def overview(
    warehouse: Warehouse,
    period: str = "day",
    by: str | None = None,
    scope: Scope = Scope(),
    whole_log: bool = False,
) -> dict[tuple, tuple]:
    """Our overview as (period, value) → the measures in COLUMNS' order."""
    events = user_events(warehouse, scope, technology=by in ("device", "browser", "os"))
    s = sessions(sessionize(events))
    seen = first_seen(warehouse) if whole_log else None
    table = web_overview(s, period, by=by, first_seen=seen).to_pyarrow()
    assert table.column_names == ["period", *([by] if by else []), *COLUMNS]
    out = {}
    for row in table.to_pylist():
        key = (row.pop("period"), row.pop(by) if by else None)
        assert key not in out
        out[key] = tuple(row[c] for c in COLUMNS)
    assert [k[0] for k in out] == sorted(k[0] for k in out)
    return out


def same_overview(got: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key] == pytest.approx(want), key


# --- random logs -------------------------------------------------------------------------

KINDS = ("page:/", "page:/a", "page:/b", "screen:Home", "track:a", "track:Order Completed",
         "identify")  # fmt: skip
UTMS = (None, None, None, GOOGLE_SPRING, ("newsletter", "email", None),
        ("facebook", "cpc", "spring"), (None, None, "spring"),
        ("partner", "affiliate", None))  # fmt: skip
DAYS = (0, 0, 1, 6, 29)  # Monday, Tuesday, Sunday (before a new week), March 31


def as_row(user, day, late, seconds, kind, utm, referrer, revenue, ua) -> dict[str, Any]:
    # from 9:00, or from 23:00 (into the next day)
    when = T0 + DAY * day + timedelta(hours=14 * late, seconds=seconds)
    return kind_event(
        f"u{user}", when, kind, referrer=referrer, revenue=revenue, utm=utm, user_agent=ua
    )


STEP = st.tuples(
    st.sampled_from((0, 5, 10, 11, 60)),  # seconds after the burst's previous event
    st.sampled_from(KINDS),
    st.sampled_from(UTMS),
    st.sampled_from(list(HOSTS)),
    st.sampled_from((None, 12.5)),
)


@st.composite
def bursts(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few events of one user from one device in quick succession, starting on a
    5-minute grid over two and a half hours: sessions of several views are common, and
    gaps and durations land on and beside every boundary."""
    user, day, late = draw(st.integers(0, 3)), draw(st.sampled_from(DAYS)), draw(st.booleans())
    ua = draw(st.sampled_from(list(TECHNOLOGY)))
    seconds = draw(st.integers(0, 30)) * 300
    rows = []
    for gap, kind, utm, referrer, revenue in draw(st.lists(STEP, min_size=1, max_size=4)):
        seconds += gap
        rows.append(as_row(user, day, late, seconds, kind, utm, referrer, revenue, ua))
    return rows


ROWS = st.lists(bursts(), min_size=1, max_size=10).map(lambda b: [r for rows in b for r in rows])
BREAKDOWNS = (None, "channel_group", "source", "referrer_host", "entry_page", "exit_page",
              "device", "browser", "os")  # fmt: skip


def test_overview_and_top_pages_match_a_replay(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine, duckdb_examples=25)
    @given(
        rows=ROWS,
        period=st.sampled_from(("day", "week", "month", "all")),
        by=st.sampled_from(BREAKDOWNS),
        cut=st.booleans(),
        whole_log=st.booleans(),
        limit=st.integers(1, 6),
    )
    def check(rows, period: str, by: str | None, cut: bool, whole_log: bool, limit: int) -> None:
        warehouse.truncate("events")
        write_events(warehouse, rows)
        # a scope from the second day: users seen before it are returning with the whole
        # log's first_seen, new without it
        start = T0 + DAY if cut else None
        in_scope = [r for r in rows if start is None or r["when"] >= start]
        first = None
        if whole_log:
            first = {}
            for r in rows:
                first[r["user"]] = min(first.get(r["user"], r["when"]), r["when"])
        got = overview(warehouse, period, by, Scope(start=start), whole_log)
        same_overview(got, replay_overview(in_scope, period, by, first))

        events = user_events(warehouse, Scope(start=start))
        s = sessionize(events)
        pages = [
            tuple(p.values()) for p in top_pages(s, sessions(s), limit).to_pyarrow().to_pylist()
        ]
        expected = replay_top_pages(in_scope, limit)
        assert [p[:-1] for p in pages] == [p[:-1] for p in expected]
        assert [p[-1] for p in pages] == pytest.approx([p[-1] for p in expected])

    check()


# --- edges -------------------------------------------------------------------------------


def test_a_session_belongs_to_the_period_of_its_start(warehouse: Warehouse) -> None:
    sunday_night = datetime(2026, 3, 8, 23, 50, tzinfo=UTC)
    month_end = datetime(2026, 3, 31, 23, 45, tzinfo=UTC)
    write_events(
        warehouse,
        [
            # Sunday 23:50 to Monday 00:10: one session, on Sunday, in the week before
            event("sun", sunday_night, path="/"),
            event("sun", sunday_night + timedelta(minutes=20), path="/a"),
            # Monday morning
            event("mon", datetime(2026, 3, 9, 10, tzinfo=UTC), path="/"),
            # March 31 23:45 to April 1 00:05: in March
            event("month", month_end, path="/"),
            event("month", month_end + timedelta(minutes=10), "a"),
            event("month", month_end + timedelta(minutes=20), path="/b"),
        ],
    )  # fmt: skip
    days = overview(warehouse, "day")
    assert sorted(days) == [(date(2026, 3, d), None) for d in (8, 9, 31)]
    # users, new, returning, sessions, pageviews, pages/session, duration, bounce, engaged
    assert days[date(2026, 3, 8), None][:9] == (1, 1, 0, 1, 2, 2.0, 1200.0, 0.0, 1.0)
    assert days[date(2026, 3, 9), None][:9] == (1, 1, 0, 1, 1, 1.0, 0.0, 1.0, 0.0)
    assert days[date(2026, 3, 31), None][:9] == (1, 1, 0, 1, 2, 2.0, 1200.0, 0.0, 1.0)
    weeks = overview(warehouse, "week")
    assert {k[0]: v[3] for k, v in weeks.items()} == {
        date(2026, 3, 2): 1, date(2026, 3, 9): 1, date(2026, 3, 30): 1,
    }  # fmt: skip
    months = overview(warehouse, "month")
    assert list(months) == [(date(2026, 3, 1), None)]
    assert months[date(2026, 3, 1), None][:5] == (3, 3, 0, 3, 5)
    assert months[date(2026, 3, 1), None][6] == pytest.approx(2400.0 / 3)
    everything = overview(warehouse, "all")
    assert list(everything) == [(date(1970, 1, 1), None)]
    assert everything[date(1970, 1, 1), None][3] == 3


def test_new_and_returning_users(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("old", T0, path="/"),
            event("old", T0 + 2 * DAY, path="/"),
            event("old", T0 + 2 * DAY + timedelta(hours=3), path="/"),  # a second session
            event("new", T0 + 2 * DAY, path="/", utm=GOOGLE_SPRING),
            event("new", T0 + 9 * DAY, "a"),
        ],
    )
    mar2, mar4, mar11 = date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 11)
    days = overview(warehouse, "day")
    # users, new, returning, sessions
    assert {k[0]: v[:4] for k, v in days.items()} == {
        mar2: (1, 1, 0, 1), mar4: (2, 1, 1, 3), mar11: (1, 0, 1, 1),
    }  # fmt: skip
    weeks = overview(warehouse, "week")
    assert {k[0]: v[:4] for k, v in weeks.items()} == {
        mar2: (2, 2, 0, 4),
        date(2026, 3, 9): (1, 0, 1, 1),
    }
    # from March 3: without the whole log, 'old' looks new; with it, 'old' returns
    scope = Scope(start=T0 + DAY)
    assert overview(warehouse, "day", scope=scope)[mar4, None][:3] == (2, 2, 0)
    assert overview(warehouse, "day", scope=scope, whole_log=True)[mar4, None][:3] == (2, 1, 1)
    assert overview(warehouse, "week", scope=scope, whole_log=True)[mar2, None][:3] == (2, 2, 0)
    # a breakdown counts each user in each value they have a session under
    by_channel = overview(warehouse, "day", by="channel_group", whole_log=True)
    assert {k: v[:3] for k, v in by_channel.items() if k[0] == mar4} == {
        (mar4, "Direct"): (1, 0, 1), (mar4, "Paid Search"): (1, 1, 0),
    }  # fmt: skip


CHANNEL_CASES = [
    # (utm source, medium, campaign), referrer, expected group
    (("google", "cpc", "spring"), None, "Paid Search"),
    (("Google", "CPC", None), None, "Paid Search"),
    (("adnet", "cpc", None), "https://www.bing.com/", "Paid Search"),
    (("engine", "sem", None), None, "Paid Search"),
    (("facebook", "cpc", None), None, "Paid Social"),
    (("instagram", "paid_social", None), None, "Paid Social"),
    (("vk", "cpc", None), None, "Paid Social"),  # names that begin or end with v or f
    ((" Facebook ", "CPC ", None), None, "Paid Social"),  # case and spaces do not matter
    (None, "https://www.facebook.com/", "Organic Social"),
    (None, "https://l.facebook.com/l.php?u=x", "Organic Social"),
    (None, "https://t.co/abc", "Organic Social"),
    (("twitter", "social", None), None, "Organic Social"),
    (("newsletter", "email", "march"), None, "Email"),
    (("crm", "email", None), None, "Email"),
    (("newsletter", None, None), None, "Email"),
    (("\tNewsletter", None, None), None, "Email"),
    (None, None, "Direct"),
    (("(direct)", "(none)", None), None, "Direct"),
    (None, "https://www.google.co.uk/search?q=shoes", "Organic Search"),
    (None, "https://duckduckgo.com/", "Organic Search"),
    (("bing", "organic", None), None, "Organic Search"),
    ((None, None, "spring"), "https://www.bing.com/", "Organic Search"),
    (("gdn", "display", None), None, "Display"),
    (("adnet", "cpm", None), None, "Display"),
    (("partner", "affiliate", None), None, "Affiliates"),
    (None, "https://news.ycombinator.com/item?id=1", "Referral"),
    (None, "https://www.examplegoogle.com/", "Referral"),
    (None, "https://t.example.com/post", "Referral"),
    (None, "https://x.mycompany.com/", "Referral"),
    (None, "https://www.google.co.uk/", "Organic Search"),
    (None, "https://m.facebook.com/story", "Organic Social"),
    (("partner-blog", "referral", None), None, "Referral"),
    (("spring-sale", None, None), None, "Other"),
    (("adnet", "cpc", None), None, "Other"),
]


def test_default_channel_grouping(warehouse: Warehouse) -> None:
    rows = [
        event(f"c{i}", 0, path="/", utm=utm, referrer=referrer)
        for i, (utm, referrer, _) in enumerate(CHANNEL_CASES)
    ]
    write_events(warehouse, rows)
    got = {
        r[USER]: (r["channel_group"], r["referrer_host"])
        for r in sessions(sessionize(user_events(warehouse))).to_pyarrow().to_pylist()
    }
    assert {u: g for u, (g, _) in got.items()} == {
        f"user:c{i}": group for i, (_, _, group) in enumerate(CHANNEL_CASES)
    }
    hosts = {CHANNEL_CASES[int(u.removeprefix("user:c"))][1]: h for u, (_, h) in got.items()}
    assert hosts == {
        None: None,
        "https://www.bing.com/": "bing.com",
        "https://www.facebook.com/": "facebook.com",
        "https://l.facebook.com/l.php?u=x": "l.facebook.com",
        "https://t.co/abc": "t.co",
        "https://www.google.co.uk/search?q=shoes": "google.co.uk",
        "https://duckduckgo.com/": "duckduckgo.com",
        "https://news.ycombinator.com/item?id=1": "news.ycombinator.com",
        "https://www.examplegoogle.com/": "examplegoogle.com",
        "https://t.example.com/post": "t.example.com",
        "https://x.mycompany.com/": "x.mycompany.com",
        "https://www.google.co.uk/": "google.co.uk",
        "https://m.facebook.com/story": "m.facebook.com",
    }
    # the overview by channel group counts one session per case
    by_group = overview(warehouse, "day", by="channel_group")
    expected = Counter(group for _, _, group in CHANNEL_CASES)
    assert {k[1]: v[3] for k, v in by_group.items()} == expected


def test_referrer_host_of_odd_urls(warehouse: Warehouse) -> None:
    referrers = {
        "HTTPS://WWW.Google.COM/Search": "google.com",
        "http://l.facebook.com:8080/x": "l.facebook.com",
        "https://www2.example.org?x=1": "www2.example.org",
        "android-app://com.example.app/": "com.example.app",
        "not a url": None,
    }
    write_events(
        warehouse, [event(f"r{i}", 0, path="/", referrer=r) for i, r in enumerate(referrers)]
    )
    got = {
        r["referrer"]: r["referrer_host"]
        for r in sessions(sessionize(user_events(warehouse))).to_pyarrow().to_pylist()
    }
    assert got == referrers


@pytest.mark.parametrize(("user_agent", "expected"), list(TECHNOLOGY.items()))
def test_user_agents(user_agent: str | None, expected: tuple[str, str, str]) -> None:
    assert parse_user_agent(user_agent) == expected


def test_breakdown_by_technology(warehouse: Warehouse) -> None:
    agents = [CHROME_WINDOWS, IPHONE_SAFARI, IPAD_SAFARI, GOOGLEBOT, IPHONE_SAFARI, None]
    rows = [event(f"t{i}", 0, path="/", user_agent=ua) for i, ua in enumerate(agents)]
    # the landing event's user agent is the session's
    rows.append(event("t0", 5, path="/a", user_agent=IPHONE_SAFARI))
    write_events(warehouse, rows)
    day = date(2026, 3, 2)
    devices = {k[1]: v[3] for k, v in overview(warehouse, "day", by="device").items()}
    assert devices == {"desktop": 1, "mobile": 2, "tablet": 1, "bot": 1, "unknown": 1}
    browsers = {k[1]: v[:4] for k, v in overview(warehouse, "day", by="browser").items()}
    assert browsers == {
        "Chrome": (1, 1, 0, 1), "Mobile Safari": (3, 3, 0, 3), "Googlebot": (1, 1, 0, 1),
        "unknown": (1, 1, 0, 1),
    }  # fmt: skip
    systems = overview(warehouse, "day", by="os")
    assert {k[1]: v[3] for k, v in systems.items()} == {
        "Windows": 1, "iOS": 3, "Other": 1, "unknown": 1,
    }  # fmt: skip
    assert systems[day, "Windows"][4] == 2  # its two pageviews


def test_top_pages(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("a", 0, path="/"), event("a", 10, path="/shop"), event("a", 20, path="/"),
            event("b", 0, path="/shop"), event("b", 5, "Home", type="screen"),
            event("b", 3600, path="/shop"),  # a second session: enters and leaves on /shop
            event("c", 0, path="/"), event("c", 1, "Order Completed"),
        ],
    )  # fmt: skip
    s = sessionize(user_events(warehouse))
    got = [tuple(r.values()) for r in top_pages(s, sessions(s)).to_pyarrow().to_pylist()]
    # page, views, users, entrances, exits, exit rate
    assert got == [
        ("/", 3, 2, 2, 2, pytest.approx(2 / 3)),
        ("/shop", 3, 2, 2, 1, pytest.approx(1 / 3)),
        ("Home", 1, 1, 0, 1, 1.0),
    ]
    assert [r["page"] for r in top_pages(s, sessions(s), limit=2).to_pyarrow().to_pylist()] == [
        "/", "/shop",
    ]  # fmt: skip


def test_bad_breakdowns_and_limits(duck: Warehouse) -> None:
    s = sessionize(user_events(duck))
    with pytest.raises(InvalidInput) as error:
        web_overview(sessions(s), by="planet")
    assert error.value.field == "by"
    with pytest.raises(InvalidInput):  # no user agents parsed
        web_overview(sessions(s), by="device")
    with pytest.raises(InvalidInput) as error:
        top_pages(s, sessions(s), limit=0)
    assert error.value.field == "limit"
    with pytest.raises(ValueError):
        web_overview(sessions(s), period="fortnight")
