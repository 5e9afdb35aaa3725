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
    ordered = ibis.window(group_by=USER, order_by=["_ts", "message_id"])
    upto = ibis.window(group_by=USER, order_by=["_ts", "message_id"], rows=(None, 0))
    step = events.mutate(_ts=events.timestamp, ts_us=epoch_micros(events.timestamp),
                         _campaign=campaign, _tagged=tagged.cast("int64"))  # fmt: skip
    step = step.mutate(
        seq=ibis.row_number().over(ordered) + 1,
        _gap=step.ts_us - step.ts_us.lag().over(ordered),
        _campaigns_so_far=step._tagged.sum().over(upto),
    )
    # The campaign in force after each event: that of the latest tagged event so far.
    step = step.mutate(
        _in_force=step._campaign.max().over(ibis.window(group_by=[USER, step._campaigns_so_far]))
    )
    step = step.mutate(_in_force_before=step._in_force.lag().over(ordered))
    starts = (
        step._gap.isnull()
        | (step._gap > timeout_us)
        | (
            (step._tagged == 1)
            & (step._in_force_before.isnull() | (step._in_force_before != step._campaign))
        )
    )
    step = step.mutate(_starts=starts.cast("int64"))
    step = step.mutate(session_number=step._starts.sum().over(upto))
    step = step.mutate(session_id=step[USER] + "#" + step.session_number.cast("string"))
    return step.drop(
        "_ts", "_campaign", "_tagged", "_gap", "_campaigns_so_far", "_in_force",
        "_in_force_before", "_starts",
    )  # fmt: skip


def sessions(sessionized: ir.Table, conversions: Sequence[str] = DEFAULT_CONVERSIONS) -> ir.Table:
    """One row per session of a `sessionize`d table, with its measures and landing
    attributes (see the module docstring)."""
    t = sessionized
    is_view = t.type.isin(VIEW_TYPES)
    is_conversion = (t.type == "track") & t.event.isin(list(conversions) or [""])
    t = t.mutate(_view=view_name(t), _is_view=is_view, _conv=is_conversion)
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
    grouped = t.group_by([USER, "session_id", "session_number"]).aggregate(
        start=t.timestamp.min(),
        end=t.timestamp.max(),
        _first_us=t.ts_us.min(),
        _last_us=t.ts_us.max(),
        events=t.count(),
        views=t._is_view.sum(),
        conversions=t._conv.sum(),
        revenue=t.revenue.sum(where=t._conv).fill_null(0.0),
        entry_page=t._view.argmin(first, where=t._is_view),
        exit_page=t._view.argmax(first, where=t._is_view),
        **landing,
    )
    duration = (grouped._last_us - grouped._first_us) / 1e6
    return grouped.mutate(
        duration_s=duration,
        bounced=(grouped.views == 1) & (grouped.events == 1),
        engaged=(duration > ENGAGED_SECONDS) | (grouped.conversions > 0) | (grouped.views >= 2),
        referrer_host=referrer_host(grouped.referrer),
        channel_group=channel_group(grouped.utm_source, grouped.utm_medium, grouped.referrer),
    ).drop("_first_us", "_last_us")
