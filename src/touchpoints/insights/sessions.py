"""Sessions: a user's events cut into visits.

A user's events, in time order (ties broken by message id), form one session until
either of two things happens:

- more than `timeout` passes between two consecutive events (30 minutes by default);
- an event carries a campaign (any of UTM source, medium or campaign) that differs from
  the campaign in force, i.e. that of the user's latest earlier event carrying one (no
  earlier campaign counts as different). Untagged events never start a session by
  themselves, so a visit's second page does not split it.

A session's views are its page and screen events; its page is the path of a page view
(else its name or URL) or the name of a screen. A session *bounces* when it holds a
single view and no other event; it is *engaged* when it lasts more than 10 seconds,
holds a conversion, or holds two views or more. Its duration runs from its first event
to its last. Its landing attributes (campaign, referrer, channel group, device) come
from its first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import ibis
import ibis.expr.types as ir

from touchpoints.insights.channels import channel_group, referrer_host
from touchpoints.insights.frame import USER
from touchpoints.warehouse.functions import epoch_micros, json_text

DEFAULT_TIMEOUT = timedelta(minutes=30)
#: Events that count as conversions unless told otherwise.
DEFAULT_CONVERSIONS = ("Order Completed", "Signed Up")
ENGAGED_SECONDS = 10
VIEW_TYPES = ("page", "screen")
_SEP = "\x1f"


def view_name(events: ir.Table) -> ir.StringValue:
    """What a view is called: a page's path (else name, else URL), a screen's name."""
    return ibis.cases(
        (events.type == "page", ibis.coalesce(events.page_path, events.name, events.page_url)),
        (events.type == "screen", ibis.coalesce(events.name, events.page_path)),
        else_=ibis.null("string"),
    )


def sessionize(events: ir.Table, timeout: timedelta = DEFAULT_TIMEOUT) -> ir.Table:
    """`events` (with `USER`) plus `ts_us` (microseconds), `seq` (the event's place in its
    user's timeline, from 1), `session_id` and `session_number` (the user's n-th session)."""
    if timeout <= timedelta(0):
        from touchpoints.errors import InvalidInput

        raise InvalidInput("the session timeout must be positive", field="timeout")
    timeout_us = int(timeout / timedelta(microseconds=1))
    tagged = (
        events.utm_source.notnull() | events.utm_medium.notnull() | events.utm_campaign.notnull()
    )
    campaign = ibis.ifelse(
        tagged,
        events.utm_source.fill_null("")
        + _SEP
        + events.utm_medium.fill_null("")
        + _SEP
        + events.utm_campaign.fill_null(""),
        ibis.null("string"),
    )
    ordered = ibis.window(group_by=USER, order_by=["timestamp", "message_id"])
    base = events.mutate(ts_us=epoch_micros(events.timestamp), _campaign=campaign)
    # A tagged event's campaign is compared with that of the user's previous tagged event
    # (the campaign in force) in a sort of the tagged events alone, which are few; the
    # untagged ones never start a session by their campaign.
    with_utm = base.filter(base._campaign.notnull())
    previous = with_utm._campaign.lag().over(ordered)
    with_utm = with_utm.mutate(_new_campaign=previous.isnull() | (previous != with_utm._campaign))
    without = base.filter(base._campaign.isnull()).mutate(_new_campaign=ibis.literal(False))
    step = with_utm.union(without)
    # One sort of each user's timeline gives the order and the gap to the previous event,
    step = step.mutate(
        seq=ibis.row_number().over(ordered) + 1,
        _gap=step.ts_us - step.ts_us.lag().over(ordered),
    )
    starts = step._gap.isnull() | (step._gap > timeout_us) | step._new_campaign
    # and a second, on `seq` alone, counts the starts so far.
    upto = ibis.window(group_by=USER, order_by="seq", rows=(None, 0))
    step = step.select(
        *events.columns,
        "ts_us",
        "seq",
        session_number=starts.cast("int64").sum().over(upto),
    )
    return step.mutate(session_id=_session_id(step[USER], step.session_number))


def _session_id(user: ir.StringValue, number: ir.IntegerValue) -> ir.StringValue:
    return user + "#" + number.cast("string")


def sessions(sessionized: ir.Table, conversions: Sequence[str] = DEFAULT_CONVERSIONS) -> ir.Table:
    """One row per session of a `sessionize`d table, with its measures and landing
    attributes (see the module docstring)."""
    t = sessionized
    is_view = t.type.isin(VIEW_TYPES)
    is_conversion = (t.type == "track") & t.event.isin(list(conversions) or [""])
    page = view_name(t)
    first = t.seq
    landing = {
        "channel": t.channel.argmin(first),
        "utm_source": t.utm_source.argmin(first),
        "utm_medium": t.utm_medium.argmin(first),
        "utm_campaign": t.utm_campaign.argmin(first),
        "referrer": t.page_referrer.argmin(first),
        "country": json_text(t.context, "location.country").argmin(first),
    }
    for name in ("device", "browser", "os"):
        if name in t.columns:
            landing[name] = t[name].argmin(first)
    # Grouped by user and number: `session_id` is spelt once per session, afterwards.
    g = t.group_by([USER, "session_number"]).aggregate(
        start=t.timestamp.min(),
        end=t.timestamp.max(),
        events=t.count(),
        views=is_view.sum(),
        conversions=is_conversion.sum(),
        revenue=t.revenue.sum(where=is_conversion).fill_null(0.0),
        entry_page=page.argmin(first, where=is_view),
        exit_page=page.argmax(first, where=is_view),
        **landing,
        duration_s=(t.ts_us.max() - t.ts_us.min()) / 1e6,
    )
    return g.select(
        g[USER],
        _session_id(g[USER], g.session_number).name("session_id"),
        *[g[c] for c in g.columns if c != USER],
        bounced=(g.views == 1) & (g.events == 1),
        engaged=(g.duration_s > ENGAGED_SECONDS) | (g.conversions > 0) | (g.views >= 2),
        referrer_host=referrer_host(g.referrer),
        channel_group=channel_group(g.utm_source, g.utm_medium, g.referrer),
    )
