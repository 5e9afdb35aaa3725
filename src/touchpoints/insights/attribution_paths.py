"""Conversion paths from the event log, as Ibis expressions (DuckDB and Spark alike).

A *touchpoint* is either the entry of a web or app session (its landing channel group,
campaign or source / medium, exactly as the web report and campaign KPIs see them, see
`touchpoints.insights.sessions`), or an email click (`Email Link Clicked`: channel
`Email`, campaign from its UTM campaign else its `campaign_name` property). A touch
repeating the user's previous touch (same key) within the session timeout is the same
touch and is dropped, so an email click and the tagged visit it opens count once.

A *conversion* is a track event named `conversion_event` (`Order Completed`) on any
channel, its revenue that of the event. The path of a conversion is the user's touches
after the previous conversion, at or before this one, and no older than `lookback`; a
conversion with none has the path `(no touchpoint)`. The touches after a user's last
conversion (no older than `lookback` before the latest of them) make a non-converting
path. `conversion_paths` aggregates them per path text (`Paid Search > Email > Direct`);
`time_decay_credit` splits each conversion by touch age, which the path text forgets.
"""

from __future__ import annotations

from datetime import timedelta

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER
from touchpoints.insights.sessions import DEFAULT_TIMEOUT, sessionize, sessions
from touchpoints.warehouse.functions import epoch_micros, json_text

#: What a touchpoint is called, per `by`; and the key that counts as "direct".
GROUPINGS = ("channel", "campaign", "source_medium")
DIRECT_KEYS = {"channel": "Direct", "campaign": "(not set)", "source_medium": "(direct) / (none)"}
NOT_SET = "(not set)"
NO_TOUCH = "(no touchpoint)"
EMAIL_CLICKS = ("Email Link Clicked",)
VISIT_CHANNELS = ("web", "app")
DEFAULT_LOOKBACK = timedelta(days=30)
SEP = " > "
_DAY_US = 86_400_000_000
_PAD = 6  # touches per path are numbered 000001… so that text order is time order


def _check(by: str, lookback: timedelta) -> None:
    if by not in GROUPINGS:
        raise InvalidInput(f"by is one of {', '.join(GROUPINGS)}, not {by!r}", field="by")
    if lookback <= timedelta(0):
        raise InvalidInput("the lookback window must be positive", field="lookback")


def _clean(key: ir.StringValue) -> ir.StringValue:
    """A key fit for the `a > b` notation: no `>` inside."""
    return key.re_replace(">", "-")


def touchpoints(events: ir.Table, by: str = "channel",
                timeout: timedelta = DEFAULT_TIMEOUT) -> ir.Table:  # fmt: skip
    """Every touch (`USER`, `ts_us`, `key`) of the users in `events`: session entries of
    the web and app channels and email clicks, repeats within `timeout` dropped."""
    _check(by, DEFAULT_LOOKBACK)
    visits = sessions(sessionize(events.filter(events.channel.isin(VISIT_CHANNELS)), timeout))
    if by == "channel":
        visit_key = visits.channel_group
    elif by == "campaign":
        visit_key = visits.utm_campaign.fill_null(NOT_SET)
    else:
        source = ibis.coalesce(visits.utm_source, visits.referrer_host, ibis.literal("(direct)"))
        medium = ibis.coalesce(
            visits.utm_medium,
            ibis.ifelse(visits.referrer_host.notnull(), "referral", ibis.null("string")),
            ibis.literal("(none)"),
        )
        visit_key = source + " / " + medium
    visit_touches = visits.select(USER, ts_us=epoch_micros(visits.start), key=visit_key)
    clicks = events.filter((events.type == "track") & events.event.isin(EMAIL_CLICKS))
    if by == "channel":
        click_key = ibis.literal("Email")
    elif by == "campaign":
        click_key = ibis.coalesce(
            clicks.utm_campaign,
            json_text(clicks.properties, "campaign_name"),
            ibis.literal(NOT_SET),
        )
    else:
        click_key = (
            clicks.utm_source.fill_null("email") + " / " + clicks.utm_medium.fill_null("email")
        )
    click_touches = clicks.select(USER, ts_us=epoch_micros(clicks.timestamp), key=click_key)
    t = visit_touches.union(click_touches, distinct=False)
    t = t.mutate(key=_clean(t.key))
    ordered = ibis.window(group_by=USER, order_by=["ts_us", "key"])
    t = t.mutate(_prev_key=t.key.lag().over(ordered), _prev_ts=t.ts_us.lag().over(ordered))
    timeout_us = int(timeout / timedelta(microseconds=1))
    repeat = (t._prev_key == t.key) & (t.ts_us - t._prev_ts <= timeout_us)
    return t.filter(~repeat.fill_null(False)).select(USER, "ts_us", "key")


def journeys(events: ir.Table, by: str = "channel", lookback: timedelta = DEFAULT_LOOKBACK,
             conversion_event: str = "Order Completed",
             timeout: timedelta = DEFAULT_TIMEOUT) -> tuple[ir.Table, ir.Table]:  # fmt: skip
    """The conversions (`USER`, `_conv`, `conv_us`, `revenue`) and the touches assigned
    to a journey (`USER`, `_conv` (null: the non-converting rest), `ts_us`, `key`,
    `_pos`: its place on the path)."""
    _check(by, lookback)
    if not conversion_event.strip():
        raise InvalidInput("the conversion event must not be empty", field="conversion_event")
    touches = touchpoints(events, by, timeout)
    orders = events.filter((events.type == "track") & (events.event == conversion_event))
    orders = orders.select(
        USER, ts_us=epoch_micros(orders.timestamp), key=ibis.null("string"),
        revenue=orders.revenue.cast("float64").fill_null(0.0), _kind=ibis.literal(1),
        _mid=orders.message_id,
    )  # fmt: skip
    touch_rows = touches.mutate(
        revenue=ibis.null("float64"), _kind=ibis.literal(0), _mid=ibis.null("string")
    )
    line = touch_rows.union(orders, distinct=False)
    # One timeline per user: a touch at the very time of an order comes before it.
    line = line.mutate(
        _seq=ibis.row_number().over(
            ibis.window(group_by=USER, order_by=["ts_us", "_kind", "key", "_mid"])
        )
    )
    ahead = ibis.window(group_by=USER, order_by="_seq", rows=(0, None))
    at_order = ibis.ifelse(line._kind == 1, line._seq, ibis.null("int64"))
    line = line.mutate(_conv=at_order.min().over(ahead))
    conversions = line.filter(line._kind == 1).select(
        USER, "_conv", conv_us=line.ts_us, revenue=line.revenue
    )
    t = line.filter(line._kind == 0)
    ends = conversions.select(
        _user=conversions[USER], _c=conversions._conv, _end=conversions.conv_us
    )
    t = t.left_join(ends, (t[USER] == ends._user) & (t._conv == ends._c)).drop("_user", "_c")
    rest_end = t.ts_us.max().over(ibis.window(group_by=[USER, "_conv"]))
    t = t.mutate(_end=ibis.coalesce(t._end, rest_end))
    lookback_us = int(lookback / timedelta(microseconds=1))
    t = t.filter(t.ts_us >= t._end - lookback_us)
    t = t.mutate(
        _pos=ibis.row_number().over(ibis.window(group_by=[USER, "_conv"], order_by="_seq")) + 1
    )
    return conversions, t.select(USER, "_conv", "ts_us", "key", "_pos", "_end")


def conversion_paths(events: ir.Table, by: str = "channel",
                     lookback: timedelta = DEFAULT_LOOKBACK,
                     conversion_event: str = "Order Completed",
                     since: ir.TimestampScalar | None = None,
                     timeout: timedelta = DEFAULT_TIMEOUT) -> ir.Table:  # fmt: skip
    """Paths and what ended them: `path` (`a > b > c`), `conversions`, `revenue`, `nulls`
    (journeys without a conversion). Conversions (and non-converting journeys ending)
    before `since` only bound the paths after them; give `events` from `since - lookback`."""
    conversions, touches = journeys(events, by, lookback, conversion_event, timeout)
    numbered = touches._pos.cast("string").lpad(_PAD, "0") + "\x1f" + touches.key
    per = touches.group_by([USER, "_conv"]).aggregate(
        _steps=numbered.collect(), _end=touches._end.max()
    )
    text = per._steps.sort().join(SEP).re_replace(f"[0-9]{{{_PAD}}}\x1f", "")
    per = per.select(_user=per[USER], _c=per._conv, path=text, _end=per._end)
    j = conversions.left_join(per, (conversions[USER] == per._user) & (conversions._conv == per._c))
    converted = j.select(
        path=j.path.fill_null(NO_TOUCH), conversions=ibis.literal(1), revenue=j.revenue,
        nulls=ibis.literal(0), _end=j.conv_us,
    )  # fmt: skip
    rest = per.filter(per._c.isnull())
    lost = rest.select(
        path=rest.path, conversions=ibis.literal(0), revenue=ibis.literal(0.0),
        nulls=ibis.literal(1), _end=rest._end,
    )  # fmt: skip
    rows = converted.union(lost, distinct=False)
    if since is not None:
        rows = rows.filter(rows._end >= epoch_micros(since))
    out = rows.group_by("path").aggregate(
        conversions=rows.conversions.sum(), revenue=rows.revenue.sum(), nulls=rows.nulls.sum()
    )
    return out.order_by([ibis.desc("conversions"), ibis.desc("nulls"), "path"])


def time_decay_credit(events: ir.Table, by: str = "channel",
                      lookback: timedelta = DEFAULT_LOOKBACK,
                      conversion_event: str = "Order Completed",
                      half_life: timedelta = timedelta(days=7),
                      since: ir.TimestampScalar | None = None,
                      timeout: timedelta = DEFAULT_TIMEOUT) -> ir.Table:  # fmt: skip
    """Time-decay credit per touch key (`key`, `conversions`, `revenue`): each touch of a
    conversion weighs 2^(-age / half_life), age the time from the touch to the conversion,
    and the conversion is split in proportion; a conversion with no touch goes whole to
    `(no touchpoint)`."""
    if half_life <= timedelta(0):
        raise InvalidInput("the half-life must be positive", field="half_life")
    conversions, touches = journeys(events, by, lookback, conversion_event, timeout)
    if since is not None:
        conversions = conversions.filter(conversions.conv_us >= epoch_micros(since))
    t = touches.filter(touches._conv.notnull())
    ages = (t._end - t.ts_us).cast("float64") / _DAY_US
    half_days = half_life / timedelta(days=1)
    t = t.mutate(_w=(ages * (-0.6931471805599453 / half_days)).exp())
    t = t.mutate(_share=t._w / t._w.sum().over(ibis.window(group_by=[USER, "_conv"])))
    c = conversions.select(_user=conversions[USER], _c=conversions._conv, _rev=conversions.revenue)
    j = c.left_join(t, (c._user == t[USER]) & (c._c == t._conv))
    j = j.select(key=j.key.fill_null(NO_TOUCH), _share=j._share.fill_null(1.0), _rev=j._rev)
    return (
        j.group_by("key")
        .aggregate(conversions=j._share.sum(), revenue=(j._share * j._rev).sum())
        .order_by("key")
    )
