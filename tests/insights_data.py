"""Small synthetic event logs for the insights tests, written through the real write path.

`write_events` takes plain rows (user, when, what) and stores them as collected events,
so each analysis is tested on what it reads in production. `random_log` is a hypothesis
strategy of such rows; `settings_for` keeps Spark runs few (each query takes a second).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from touchpoints.collect.normalize import Envelope, normalize
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
_ids = itertools.count()


def event(
    user: str,
    when: datetime | float,
    name: str | None = None,
    *,
    type: str | None = None,
    path: str | None = None,
    properties: dict[str, Any] | None = None,
    utm: tuple[str | None, str | None, str | None] | None = None,
    referrer: str | None = None,
    user_agent: str | None = None,
    channel: str = "web",
    revenue: float | None = None,
    anonymous: bool = False,
) -> dict[str, Any]:
    """A row for `write_events`. `when` is a datetime or seconds after `T0`; `name` makes
    a track event, `path` a page view (`type` says otherwise)."""
    if not isinstance(when, datetime):
        when = T0 + timedelta(seconds=when)
    return {
        "user": user, "when": when, "name": name, "path": path,
        "type": type or ("track" if name else "page"), "properties": properties or {},
        "utm": utm, "referrer": referrer, "user_agent": user_agent, "channel": channel,
        "revenue": revenue, "anonymous": anonymous,
    }  # fmt: skip


def kind_event(
    user: str, when: datetime | float, kind: str, *, referrer: str | None = None,
    revenue: float | None = None, **common: Any,
) -> dict[str, Any]:  # fmt: skip
    """A row from a short kind: `page:/path`, `screen:Name`, `track:Event` or `identify`."""
    head, _, rest = kind.partition(":")
    if head == "page":
        return event(user, when, path=rest, referrer=referrer, **common)
    if head == "screen":
        return event(user, when, rest, type="screen", **common)
    if head == "track":
        return event(user, when, rest, revenue=revenue, **common)
    return event(user, when, type="identify", **common)


def to_message(row: dict[str, Any]) -> dict[str, Any]:
    """The Segment message a row stands for."""
    n = next(_ids)
    message: dict[str, Any] = {
        "type": row["type"],
        "messageId": f"m{n:09d}",
        "timestamp": row["when"].isoformat(),
        ("anonymousId" if row["anonymous"] else "userId"): row["user"],
    }
    properties = dict(row["properties"])
    context: dict[str, Any] = {}
    if row["type"] == "track":
        message["event"] = row["name"]
        if row["revenue"] is not None:
            properties["revenue"] = row["revenue"]
        if row["path"]:  # as the tracker sends it: the page the event happened on
            context["page"] = {"path": row["path"]}
    elif row["type"] == "page":
        path = row["path"] or "/"
        properties.update(path=path, url=f"https://shop.example.com{path}")
        if row["referrer"]:
            properties["referrer"] = row["referrer"]
    elif row["type"] == "screen":
        message["name"] = row["name"] or row["path"]
    if row["utm"]:
        keys = ("source", "medium", "name")
        context["campaign"] = {k: v for k, v in zip(keys, row["utm"], strict=True) if v}
    if row["user_agent"]:
        context["userAgent"] = row["user_agent"]
    message["properties"] = properties
    message["context"] = context
    return message


def write_events(warehouse: Warehouse, rows: list[dict[str, Any]]) -> None:
    """Store the rows as collected events (through normalisation and the writer)."""
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_channel.setdefault(row["channel"], []).append(row)
    writer = open_writer(warehouse)
    for channel, group in by_channel.items():
        envelope = Envelope(f"src_{channel}", channel, int(T0.timestamp() * 1e6) + 10**12)
        writer.write([normalize(to_message(row), envelope) for row in group])
    writer.close()


def random_log(
    users: int = 4, names: tuple[str, ...] = ("a", "b", "c"), max_events: int = 25,
    span_s: int = 7200, tick_s: int = 60,
) -> st.SearchStrategy[list[dict[str, Any]]]:  # fmt: skip
    """Random track events: few users, few names, times on a coarse grid so that ties
    and window boundaries happen often."""
    row = st.builds(
        lambda u, t, n: event(f"u{u}", t * tick_s, n),
        st.integers(0, users - 1),
        st.integers(0, span_s // tick_s),
        st.sampled_from(names),
    )
    return st.lists(row, min_size=1, max_size=max_events)


def settings_for(engine: str, duckdb_examples: int = 40) -> settings:
    """Hypothesis settings: many examples on DuckDB, a handful on Spark."""
    return settings(
        max_examples=duckdb_examples if engine == "duckdb" else 4,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
