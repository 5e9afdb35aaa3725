"""Paths and their Sankey graph: checked against a plain-Python replay on random logs (both
engines), and at the edges: ties in time, the anchor at a session's end or repeated,
sessions across midnight, the 'before' direction, naming, and bad input."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.insights_data import T0, event, random_log, settings_for, to_message, write_events
from touchpoints.collect.normalize import Envelope, normalize
from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import user_events
from touchpoints.insights.paths import paths, sankey
from touchpoints.insights.sessions import sessionize
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

GAP = timedelta(minutes=30)


def step_of(row: dict[str, Any]) -> str | None:
    if row["type"] == "track":
        return row["name"]
    if row["type"] == "page":
        return "page:" + (row["path"] or "/")
    if row["type"] == "screen":
        return "screen:" + (row["name"] or row["path"])
    return None


def replay_sessions(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Each user's rows in time order (ties: written order, as message ids are), cut where
    more than 30 minutes pass; each session as its list of step names."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_user.setdefault(row["user"], []).append(row)
    sessions: list[list[str]] = []
    for items in by_user.values():
        items.sort(key=lambda r: r["when"])  # stable: written order breaks ties
        current: list[str] = []
        last: datetime | None = None
        for row in items:
            if last is not None and row["when"] - last > GAP:
                sessions.append(current)
                current = []
            last = row["when"]
            if (name := step_of(row)) is not None:
                current.append(name)
        sessions.append(current)
    return sessions


def replay_walks(rows: list[dict[str, Any]], anchor: str, direction: str, steps: int):
    """Per session holding the anchor, the steps taken away from it (at most `steps`)."""
    for session in replay_sessions(rows):
        if anchor not in session:
            continue
        if direction == "after":
            i = session.index(anchor)
            yield session[i + 1 : i + 1 + steps]
        else:
            i = len(session) - 1 - session[::-1].index(anchor)
            yield session[max(0, i - steps) : i][::-1]


def replay_paths(rows, anchor, direction, steps, top) -> list[tuple]:
    counts = Counter(
        tuple(walk + [None] * (steps - len(walk)))
        for walk in replay_walks(rows, anchor, direction, steps)
    )
    total = sum(counts.values())
    key = lambda item: (-item[1], [(0, "") if v is None else (1, v) for v in item[0]])  # noqa: E731
    return [(*p, n, n / total) for p, n in sorted(counts.items(), key=key)[:top]]


def replay_sankey(rows, anchor, direction, steps) -> Counter:
    sign, edge = (1, "(end)") if direction == "after" else (-1, "(start)")
    edges: Counter = Counter()
    for walk in replay_walks(rows, anchor, direction, steps):
        names = [anchor, *walk] + ([edge] if len(walk) < steps else [])
        nodes = [f"{sign * k} · {name}" for k, name in enumerate(names)]
        for near, far in itertools.pairwise(nodes):
            edges[(near, far) if sign == 1 else (far, near)] += 1
    return edges


def ours(warehouse: Warehouse, anchor: str, direction: str = "after", steps: int = 3,
         top: int = 20, users: str = "") -> tuple[list[tuple], Counter]:  # fmt: skip
    """Our paths (as tuples) and Sankey edges (as a Counter) for the users whose id starts
    with `users`."""
    events = user_events(warehouse)
    s = sessionize(events.filter(events.user_id.startswith(users)) if users else events)
    got = paths(s, anchor, direction, steps, top).to_pandas().astype(object)
    got = got.where(got.notna(), None)
    edges = sankey(s, anchor, direction, steps).to_pandas()
    assert list(got.columns) == [*(f"step_{k}" for k in range(1, steps + 1)), "sessions", "share"]
    assert list(edges.columns) == ["source", "target", "value"]
    assert list(edges.value) == sorted(edges.value, reverse=True)
    sankey_edges = Counter(
        {(a, b): int(v) for a, b, v in zip(edges.source, edges.target, edges.value, strict=True)}
    )
    assert len(sankey_edges) == len(edges)  # one row per edge
    return [tuple(r) for r in got.itertuples(index=False)], sankey_edges


def same_paths(got: list[tuple], expected: list[tuple]) -> None:
    assert [r[:-1] for r in got] == [r[:-1] for r in expected]
    assert [r[-1] for r in got] == pytest.approx([r[-1] for r in expected])


_examples = itertools.count()


def fresh_users(log: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The log with its users renamed apart from every earlier example's (the warehouse
    lives as long as the test, not the example), and their common prefix."""
    prefix = f"x{next(_examples)}."
    return [{**row, "user": prefix + row["user"]} for row in log], prefix


def as_row(user: int, tick: int, name: str) -> dict[str, Any]:
    when = tick * 600.0  # a 10-minute grid: gaps of exactly 30 minutes happen
    if name.startswith("page:"):
        return event(f"u{user}", when, path=name.removeprefix("page:"))
    if name.startswith("screen:"):
        return event(f"u{user}", when, name.removeprefix("screen:"), type="screen")
    return event(f"u{user}", when, name)


NAMES = ("a", "b", "page:/x", "screen:S")
LOGS = st.one_of(
    st.lists(
        st.builds(as_row, st.integers(0, 1), st.integers(0, 24), st.sampled_from(NAMES)),
        min_size=4, max_size=30,
    ),
    # track events only, on a 5-minute grid over 3 hours
    random_log(users=2, names=("a", "b"), max_events=25, span_s=10800, tick_s=300),
)  # fmt: skip


def test_paths_and_sankey_match_a_replay(warehouse: Warehouse, engine: str) -> None:
    @settings_for(engine)
    @given(
        log=LOGS,
        data=st.data(),
        direction=st.sampled_from(("after", "before")),
        steps=st.integers(1, 4),
        top=st.integers(1, 6),
    )
    def check(log: list[dict], data: st.DataObject, direction: str, steps: int, top: int) -> None:
        anchor = data.draw(st.sampled_from(sorted({step_of(row) for row in log})), "anchor")
        log, prefix = fresh_users(log)
        write_events(warehouse, log)
        got, edges = ours(warehouse, anchor, direction, steps, top, users=prefix)
        same_paths(got, replay_paths(log, anchor, direction, steps, top))
        assert edges == replay_sankey(log, anchor, direction, steps)

    check()


def write_with_ids(warehouse: Warehouse, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Store rows under chosen message ids, in the order given."""
    envelope = Envelope("src_web", "web", int(T0.timestamp() * 1e6) + 10**12)
    writer = open_writer(warehouse)
    writer.write([normalize({**to_message(row), "messageId": i}, envelope) for i, row in rows])
    writer.close()


def test_edges(warehouse: Warehouse) -> None:
    late = datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
    # a tie broken by message id against the written order: Y (id a) comes before X (id b)
    write_with_ids(
        warehouse,
        [("tie2-b", event("tie2", 7, "X")), ("tie2-a", event("tie2", 7, "Y")),
         ("tie2-c", event("tie2", 9, "W"))],
    )  # fmt: skip
    write_events(
        warehouse,
        [
            # ties: three events at one instant keep their written (message id) order
            event("tie", 5, "Z"), event("tie", 5, "X"), event("tie", 5, "Y"),
            # the anchor ends the session; the next event is 31 minutes later
            event("end", 0, "A"), event("end", 10, "X"), event("end", 1870, "B"),
            # the anchor repeats: 'after' starts at its first, 'before' at its last
            event("rep", 0, "X"), event("rep", 1, path="/p"), event("rep", 2, "X"),
            event("rep", 3, type="identify"), event("rep", 4, "Home", type="screen"),
            # across midnight: 20 minutes apart is one session, then 40 minutes apart is not
            event("night", late, "X"), event("night", late + timedelta(minutes=20), "C"),
            event("night", late + timedelta(minutes=60), "D"),
        ],
    )  # fmt: skip
    after, after_edges = ours(warehouse, "X", "after", steps=2)
    assert after == [
        (None, None, 1, 0.2),  # end: the anchor is the session's last step
        ("C", None, 1, 0.2),  # night
        ("W", None, 1, 0.2),  # tie2
        ("Y", None, 1, 0.2),  # tie
        ("page:/p", "X", 1, 0.2),  # rep (the identify event is not a step)
    ]
    before, before_edges = ours(warehouse, "X", "before", steps=3)
    assert before == [
        (None, None, None, 1, 0.2),  # night: X begins its session
        ("A", None, None, 1, 0.2),
        ("Y", None, None, 1, 0.2),  # tie2
        ("Z", None, None, 1, 0.2),
        ("page:/p", "X", None, 1, 0.2),
    ]
    assert after_edges == {
        ("0 · X", "1 · (end)"): 1, ("0 · X", "1 · C"): 1, ("1 · C", "2 · (end)"): 1,
        ("0 · X", "1 · W"): 1, ("1 · W", "2 · (end)"): 1,
        ("0 · X", "1 · Y"): 1, ("1 · Y", "2 · (end)"): 1,
        ("0 · X", "1 · page:/p"): 1, ("1 · page:/p", "2 · X"): 1,
    }  # fmt: skip
    assert before_edges == {
        ("-1 · (start)", "0 · X"): 1, ("-1 · A", "0 · X"): 1, ("-2 · (start)", "-1 · A"): 1,
        ("-1 · Y", "0 · X"): 1, ("-2 · (start)", "-1 · Y"): 1,
        ("-1 · Z", "0 · X"): 1, ("-2 · (start)", "-1 · Z"): 1,
        ("-1 · page:/p", "0 · X"): 1, ("-2 · X", "-1 · page:/p"): 1,
        ("-3 · (start)", "-2 · X"): 1,
    }  # fmt: skip
    assert ours(warehouse, "screen:Home", "before", steps=1, top=5)[0] == [("X", 1, 1.0)]


def test_sankey_values_add_up_to_the_path_counts(warehouse: Warehouse) -> None:
    rows = [event(f"u{u}", 60.0 * i, name) for u, names in
            enumerate(["XabXc", "aX", "Xb", "X", "bXab", "Xa", "cXaXb", "Xab"])
            for i, name in enumerate(names)]  # fmt: skip
    write_events(warehouse, rows)
    got, edges = ours(warehouse, "X", "after", steps=3, top=2)
    _, all_edges = ours(warehouse, "X", "after", steps=3, top=100)
    # X a b X, X, X b, X, X a b, X a, X a X b, X a b
    assert got == [(None, None, None, 2, 0.25), ("a", "b", None, 2, 0.25)]
    assert edges == all_edges  # the graph holds every path, not only the top ones
    assert sum(v for (source, _), v in edges.items() if source.startswith("0 · ")) == 8
    # every inner node (positions 1 and 2) passes on as many sessions as it receives
    for node in {t for _, t in edges if t[0] in "12" and not t.endswith("(end)")}:
        inflow = sum(v for (_, t), v in edges.items() if t == node)
        outflow = sum(v for (s, _), v in edges.items() if s == node)
        assert inflow == outflow, node
    ends = sum(v for (_, t), v in edges.items() if t.endswith("(end)"))
    third = sum(v for (_, t), v in edges.items() if t.startswith("3 · ") and "(end)" not in t)
    assert (ends, third) == (6, 2)  # each session either ends within 3 steps or takes 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"), ({"steps": 11}, "steps"), ({"steps": True}, "steps"),
        ({"direction": "sideways"}, "direction"), ({"top": 0}, "top"), ({"anchor": " "}, "anchor"),
    ],
)  # fmt: skip
def test_bad_input_is_refused(duck: Warehouse, kwargs: dict, field: str) -> None:
    s = sessionize(user_events(duck))
    args = {"anchor": "X", **kwargs}
    with pytest.raises(InvalidInput) as error:
        paths(s, **args)
    assert error.value.field == field
    if "top" not in kwargs:
        with pytest.raises(InvalidInput):
            sankey(s, **args)
