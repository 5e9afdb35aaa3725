"""Web and app analytics from sessions: the overview every analyst checks each morning.

A session belongs to the period of its start. In a period (and breakdown value):
`users` are the distinct users with a session; `new_users` those whose first event in
the whole log falls in the period, the rest `returning_users`; `pageviews` count page
and screen views; `pages_per_session` = pageviews / sessions; `avg_session_seconds` is
the mean session duration; `bounce_rate` and `engagement_rate` are the shares of
sessions that bounced or were engaged (see `touchpoints.insights.sessions`).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Period, period_start
from touchpoints.insights.sessions import VIEW_TYPES, view_name

#: Session columns a report can be broken down by, under their short names.
BREAKDOWNS = {
    "channel_group": "channel_group",
    "channel": "channel",
    "source": "utm_source",
    "medium": "utm_medium",
    "campaign": "utm_campaign",
    "referrer_host": "referrer_host",
    "entry_page": "entry_page",
    "exit_page": "exit_page",
    "device": "device",
    "browser": "browser",
    "os": "os",
    "country": "country",
}


def breakdown_column(sessions: ir.Table, by: str) -> str:
    column = BREAKDOWNS.get(by)
    if column is None or column not in sessions.columns:
        known = ", ".join(BREAKDOWNS)
        raise InvalidInput(f"cannot break down by {by!r}; choose one of {known}", field="by")
    return column


def web_overview(
    sessions: ir.Table,
    period: Period | str = Period.day,
    by: str | None = None,
    first_seen: ir.Table | None = None,
) -> ir.Table:
    """Users, new and returning users, sessions, pageviews, pages per session, average
    session duration, bounce and engagement rates per period (and breakdown value).
    `first_seen` (`USER`, `first_seen`) decides who is new; by default, the sessions'."""
    period = Period(period)
    if first_seen is None:
        first_seen = sessions.group_by(USER).aggregate(first_seen=sessions.start.min())
    known = first_seen.select(_user=first_seen[USER], _first=first_seen.first_seen)
    joined = sessions.left_join(known, sessions[USER] == known._user)
    keys = {"period": period_start(joined.start, period)}
    if by:
        keys[by] = joined[breakdown_column(sessions, by)]
    is_new = period_start(joined._first, period) == keys["period"]
    summary = joined.group_by(**keys).aggregate(
        users=joined[USER].nunique(),
        new_users=joined[USER].nunique(where=is_new),
        sessions=joined.count(),
        pageviews=joined.views.sum(),
        avg_session_seconds=joined.duration_s.mean(),
        bounce_rate=joined.bounced.cast("float64").mean(),
        engagement_rate=joined.engaged.cast("float64").mean(),
        conversions=joined.conversions.sum(),
        revenue=joined.revenue.sum(),
    )
    summary = summary.mutate(
        returning_users=summary.users - summary.new_users,
        pages_per_session=summary.pageviews / summary.sessions,
    )
    columns = [*keys, "users", "new_users", "returning_users", "sessions", "pageviews",
               "pages_per_session", "avg_session_seconds", "bounce_rate", "engagement_rate",
               "conversions", "revenue"]  # fmt: skip
    return summary.select(columns).order_by(list(keys))


def top_pages(sessionized: ir.Table, sessions: ir.Table, limit: int = 20) -> ir.Table:
    """The most viewed pages and screens: `views`, distinct `users`, and how many
    sessions entered (`entrances`) and left (`exits`) on each."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    views = sessionized.filter(sessionized.type.isin(VIEW_TYPES))
    views = views.mutate(page=view_name(views))
    pages = views.group_by("page").aggregate(views=views.count(), users=views[USER].nunique())
    entrances = sessions.group_by(_entry=sessions.entry_page).aggregate(entrances=sessions.count())
    exits = sessions.group_by(_exit=sessions.exit_page).aggregate(exits=sessions.count())
    joined = pages.left_join(entrances, pages.page == entrances._entry).left_join(
        exits, pages.page == exits._exit
    )
    out = joined.select(
        "page",
        "views",
        "users",
        entrances=joined.entrances.fill_null(0),
        exits=joined.exits.fill_null(0),
    )
    return (
        out.mutate(exit_rate=out.exits / out.views)
        .order_by([ibis.desc("views"), "page"])
        .limit(limit)
    )
