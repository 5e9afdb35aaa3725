"""Sessions: `sessionize` and `sessions` checked against a plain-Python replay of the rules
in their docstring on random logs (both engines), and at the edges: the timeout boundary,
campaign changes, ties, midnight, bounces and engagement, landing attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import event, kind_event, settings_for, write_events
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, user_events
from touchpoints.insights.sessions import sessionize, sessions
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text

CONVERSIONS = ("Order Completed", "Signed Up")
GOOGLE_SPRING = ("google", "cpc", "spring")
GOOGLE_AUTUMN = ("google", "cpc", "autumn")


# --- the replay -------------------------------------------------------------------------


def campaign_of(row: dict[str, Any]) -> tuple[str | None, ...] | None:
    """The row's campaign (source, medium, name), or None when it carries none."""
    utm = row["utm"]
    return tuple(utm) if utm and any(utm) else None


def storage_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in the order the warehouse sorts them: time, then message id. `write_events`
    numbers messages channel by channel (in order of first appearance), then row by row."""
    channels = list(dict.fromkeys(row["channel"] for row in rows))
    written = [row for channel in channels for row in rows if row["channel"] == channel]
    return sorted(written, key=lambda row: row["when"])  # stable: message ids break ties


def replay_sessions(
    rows: list[dict[str, Any]], timeout: timedelta = timedelta(minutes=30)
) -> dict[str, list[list[dict[str, Any]]]]:
    """Per user, the sessions as lists of rows: a new one when more than `timeout` passes
    or when a tagged event's campaign differs from the latest earlier one."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    in_force: dict[str, tuple | None] = {}
    last: dict[str, datetime] = {}
    for row in storage_order(rows):
        user = row["user"]
        campaign = campaign_of(row)
        new = (
            user not in last
            or row["when"] - last[user] > timeout
            or (campaign is not None and campaign != in_force.get(user))
        )
        if new:
            out.setdefault(user, []).append([])
        out[user][-1].append(row)
        last[user] = row["when"]
        if campaign is not None:
            in_force[user] = campaign
    return out


def view_of(row: dict[str, Any]) -> str | None:
    if row["type"] == "page":
        return row["path"] or "/"
    if row["type"] == "screen":
        return row["name"] or row["path"]
    return None


def summarize(session: list[dict[str, Any]], conversions: tuple[str, ...] = CONVERSIONS) -> dict:
    """A session's measures as the docstring of `touchpoints.insights.sessions` defines them."""
    views = [view_of(r) for r in session if r["type"] in ("page", "screen")]
    converted = [r for r in session if r["type"] == "track" and r["name"] in conversions]
    first = session[0]
    duration = (session[-1]["when"] - first["when"]).total_seconds()
    utm = first["utm"] or (None, None, None)
    return {
        "start": first["when"],
        "end": session[-1]["when"],
        "events": len(session),
        "views": len(views),
        "conversions": len(converted),
        "revenue": sum(r["revenue"] or 0.0 for r in converted),
        "entry_page": views[0] if views else None,
        "exit_page": views[-1] if views else None,
        "channel": first["channel"],
        "utm_source": utm[0],
        "utm_medium": utm[1],
        "utm_campaign": utm[2],
        "referrer": first["referrer"] if first["type"] == "page" else None,
        "duration_s": duration,
        "bounced": len(views) == 1 and len(session) == 1,
        "engaged": duration > 10 or bool(converted) or len(views) >= 2,
    }


# --- what the code says ------------------------------------------------------------------


def utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def sessionized_events(warehouse: Warehouse, timeout: timedelta | None = None) -> dict[int, tuple]:
    """Per event (by its `k` property): (user, seq, session_number, session_id)."""
    events = user_events(warehouse)
    s = sessionize(events) if timeout is None else sessionize(events, timeout)
    got = s.select(
        k=json_text(s.properties, "k"),
        user=s[USER],
        seq=s.seq,
        session_number=s.session_number,
        session_id=s.session_id,
    ).to_pyarrow()
    return {int(r.pop("k")): tuple(r.values()) for r in got.to_pylist()}


def session_rows(
    warehouse: Warehouse,
    timeout: timedelta | None = None,
    conversions: tuple[str, ...] | None = None,
) -> dict[tuple[str, int], dict]:
    """Our sessions by (user without its `user:` prefix, session number)."""
    events = user_events(warehouse)
    s = sessionize(events) if timeout is None else sessionize(events, timeout)
    table = sessions(s) if conversions is None else sessions(s, conversions)
    rows = table.to_pyarrow().to_pylist()
    assert len({r["session_id"] for r in rows}) == len(rows)
    for r in rows:  # Spark returns naive UTC timestamps, DuckDB aware ones
        r["start"], r["end"] = utc(r["start"]), utc(r["end"])
    return {(r[USER].removeprefix("user:"), r["session_number"]): r for r in rows}


# --- random logs -------------------------------------------------------------------------

KINDS = ("page:/", "page:/a", "page:/b", "screen:Home", "screen:Cart", "track:a",
         "track:Order Completed", "identify")  # fmt: skip
UTMS = (None, None, None, GOOGLE_SPRING, GOOGLE_AUTUMN, ("newsletter", "email", None),
        (None, None, "spring"))  # fmt: skip
REFERRERS = (None, "https://www.google.com/search?q=shoes", "https://blog.example.org/post")


def as_row(user: int, tick: int, offset: int, kind: str, utm, referrer, revenue, channel) -> dict:
    # a 5-minute grid, nudged by 10 or 11 seconds: gaps and durations land on and beside
    # every boundary (the timeout, the 10 seconds of engagement)
    when = tick * 300.0 + offset
    return kind_event(
        f"u{user}", when, kind, referrer=referrer, revenue=revenue, utm=utm, channel=channel
    )


ROWS = st.lists(
    st.builds(
        as_row,
        st.integers(0, 2),
        st.integers(0, 30),
        st.sampled_from((0, 0, 10, 11)),
        st.sampled_from(KINDS),
        st.sampled_from(UTMS),
        st.sampled_from(REFERRERS),
        st.sampled_from((None, 5.0)),
        st.sampled_from(("web", "web", "app")),
    ),
    min_size=1,
    max_size=30,
)


def numbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each carrying its index as property `k`."""
    return [{**row, "properties": {"k": k}} for k, row in enumerate(rows)]


def test_sessions_match_a_replay(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine)
    @given(rows=ROWS, timeout_min=st.sampled_from((30, 30, 10, 5)))
    def check(rows: list[dict[str, Any]], timeout_min: int) -> None:
        warehouse.truncate("events")
        rows = numbered(rows)
        write_events(warehouse, rows)
        timeout = timedelta(minutes=timeout_min)
        replayed = replay_sessions(rows, timeout)

        expected_events = {}
        for user, user_sessions in replayed.items():
            seq = 0
            for number, session in enumerate(user_sessions, 1):
                for row in session:
                    seq += 1
                    k = row["properties"]["k"]
                    expected_events[k] = (f"user:{user}", seq, number, f"user:{user}#{number}")
        assert sessionized_events(warehouse, timeout) == expected_events

        got = session_rows(warehouse, timeout)
        expected = {
            (user, number): summarize(session)
            for user, user_sessions in replayed.items()
            for number, session in enumerate(user_sessions, 1)
        }
        assert set(got) == set(expected)
        for key, want in expected.items():
            have = {name: got[key][name] for name in want}
            assert have == {**want, "revenue": pytest.approx(want["revenue"])}, key

    check()


# --- edges -------------------------------------------------------------------------------


def test_timeout_boundary(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            # exactly 30 minutes apart: one session; 30 minutes and a second: two
            event("exact", 0, path="/"), event("exact", 1800, path="/"),
            event("exact", 3601, path="/"),
            # a microsecond over the timeout is over it
            event("micro", 0, "a"), event("micro", timedelta(minutes=30, microseconds=1)
                                          .total_seconds(), "a"),
            # a long visit with small gaps stays one session, however long it lasts
            *[event("long", 1500.0 * i, "a") for i in range(6)],
        ],
    )  # fmt: skip
    got = session_rows(warehouse)
    assert sorted(got) == [("exact", 1), ("exact", 2), ("long", 1), ("micro", 1), ("micro", 2)]
    assert (got["exact", 1]["events"], got["exact", 2]["events"]) == (2, 1)
    assert got["exact", 1]["duration_s"] == 1800.0
    assert got["long", 1]["duration_s"] == 7500.0
    # a shorter timeout: the 25-minute gaps now split, and 30 minutes is over 10
    short = session_rows(warehouse, timeout=timedelta(minutes=10))
    assert sum(user == "long" for user, _ in short) == 6
    assert sum(user == "exact" for user, _ in short) == 3
    assert sum(user == "exact" for user, _ in session_rows(warehouse, timedelta(seconds=1800))) == 2
    assert sum(user == "exact" for user, _ in session_rows(warehouse, timedelta(seconds=1799))) == 3


def test_campaign_changes(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("c", 0, path="/", utm=GOOGLE_SPRING, referrer="https://www.google.com/"),  # 1
            event("c", 60, path="/a"),  # untagged: no new session
            event("c", 120, "a", utm=GOOGLE_SPRING),  # the campaign in force: none either
            event("c", 180, path="/b", utm=GOOGLE_AUTUMN),  # 2: another campaign
            event("c", 240, path="/b", utm=("google", "cpc", None)),  # 3: one part missing
            event("c", 300, path="/b", utm=("google", "cpc", None)),
            event("c", 360, path="/", utm=GOOGLE_AUTUMN),  # 4: back to an earlier campaign
            event("c", 4000, path="/x"),  # 5: the timeout
            event("c", 4060, "a", utm=GOOGLE_AUTUMN),  # the campaign still in force
            event("c", 4120, "b", utm=("GOOGLE", "cpc", "autumn")),  # 6: spelt otherwise
            # untagged, then a campaign: no earlier campaign counts as different
            event("late", 0, path="/"), event("late", 10, path="/", utm=GOOGLE_SPRING),
            # a campaign change at one instant: message ids order the two
            event("tie", 5, path="/1", utm=GOOGLE_SPRING),
            event("tie", 5, path="/2", utm=GOOGLE_AUTUMN),
            # only source, then source and medium: different campaigns
            event("part", 0, "a", utm=("news", None, None)),
            event("part", 1, "a", utm=("news", "email", None)),
        ],
    )  # fmt: skip
    got = session_rows(warehouse)
    c = [got["c", n] for n in range(1, 7)]
    assert len([key for key in got if key[0] == "c"]) == 6
    assert [s["events"] for s in c] == [3, 1, 2, 1, 2, 1]
    assert [s["utm_campaign"] for s in c] == ["spring", "autumn", None, "autumn", None, "autumn"]
    assert c[0]["referrer"] == "https://www.google.com/"
    assert (c[0]["entry_page"], c[0]["exit_page"]) == ("/", "/a")
    # landing attributes come from the first event, even when a later one is tagged
    assert (c[4]["utm_source"], c[4]["utm_medium"], c[4]["entry_page"]) == (None, None, "/x")
    assert c[5]["utm_source"] == "GOOGLE"
    assert [got["late", n]["entry_page"] for n in (1, 2)] == ["/", "/"]
    assert ("late", 3) not in got
    assert [got["tie", n]["entry_page"] for n in (1, 2)] == ["/1", "/2"]
    assert got["tie", 2]["utm_campaign"] == "autumn"
    assert [got["part", n]["utm_medium"] for n in (1, 2)] == [None, "email"]


def test_midnight_and_the_session_numbers(warehouse: Warehouse) -> None:
    late = datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
    write_events(
        warehouse,
        [
            event("night", late, path="/"),
            event("night", late + timedelta(minutes=25), path="/a"),
            event("night", late + timedelta(minutes=50), "a"),
            event("night", late + timedelta(minutes=90), path="/b"),
        ],
    )
    got = session_rows(warehouse)
    assert sorted(got) == [("night", 1), ("night", 2)]
    first, second = got["night", 1], got["night", 2]
    assert (first["start"], first["end"]) == (late, late + timedelta(minutes=50))
    assert first["duration_s"] == 3000.0
    assert (first["session_id"], second["session_id"]) == ("user:night#1", "user:night#2")
    assert second["start"] == late + timedelta(minutes=90)


def test_bounces_engagement_and_conversions(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("bounce", 0, path="/"),
            event("screen", 0, "Home", type="screen"),
            event("identify", 0, path="/"), event("identify", 5, type="identify"),
            event("ten", 0, path="/"), event("ten", 10, "a"),
            event("over_ten", 0, path="/"), event("over_ten", 10.001, "a"),
            event("converted", 0, path="/"),
            event("converted", 1, "Order Completed", revenue=20.0),
            event("converted", 2, "a", revenue=7.0),
            event("two_views", 0, path="/"), event("two_views", 0, path="/a"),
            event("track_only", 0, "a"),
            event("page_screen", 0, path="/x"), event("page_screen", 3, "Cart", type="screen"),
        ],
    )  # fmt: skip
    got = {user: s for (user, _), s in session_rows(warehouse).items()}
    assert len(got) == 9
    summary = {u: (s["bounced"], s["engaged"], s["views"], s["events"]) for u, s in got.items()}
    assert summary == {
        "bounce": (True, False, 1, 1),
        "screen": (True, False, 1, 1),
        "identify": (False, False, 1, 2),  # another event: no bounce, 5 seconds: not engaged
        "ten": (False, False, 1, 2),  # 10 seconds is not more than 10
        "over_ten": (False, True, 1, 2),
        "converted": (False, True, 1, 3),
        "two_views": (False, True, 2, 2),
        "track_only": (False, False, 0, 1),
        "page_screen": (False, True, 2, 2),
    }
    assert (got["converted"]["conversions"], got["converted"]["revenue"]) == (1, 20.0)
    assert (got["screen"]["entry_page"], got["screen"]["exit_page"]) == ("Home", "Home")
    assert (got["page_screen"]["entry_page"], got["page_screen"]["exit_page"]) == ("/x", "Cart")
    assert (got["track_only"]["entry_page"], got["track_only"]["exit_page"]) == (None, None)
    assert got["ten"]["duration_s"] == 10.0
    # conversions as told: 'a' converts, 'Order Completed' no longer does
    custom = {user: s for (user, _), s in session_rows(warehouse, conversions=("a",)).items()}
    assert (custom["ten"]["engaged"], custom["ten"]["conversions"]) == (True, 1)
    assert (custom["converted"]["conversions"], custom["converted"]["revenue"]) == (1, 7.0)
    assert (custom["bounce"]["conversions"], custom["bounce"]["revenue"]) == (0, 0.0)


def test_a_timeout_must_be_positive(duck: Warehouse) -> None:
    for timeout in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(InvalidInput) as error:
            sessionize(user_events(duck), timeout)
        assert error.value.field == "timeout"


def test_the_replay_itself() -> None:
    """The reference agrees with the examples of the spec (issue #4) written by hand."""
    rows = [
        event("u", 0, path="/", utm=GOOGLE_SPRING), event("u", 1800, path="/a"),
        event("u", 1801, "a", utm=GOOGLE_SPRING), event("u", 3602, "a"),
        event("u", 3603, "a", utm=GOOGLE_AUTUMN),
    ]  # fmt: skip
    assert [len(s) for s in replay_sessions(rows)["u"]] == [3, 1, 1]
