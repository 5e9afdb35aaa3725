"""The per-customer table churn models learn from: features as of a cutoff, and labels.

Written in Ibis over `touchpoints.insights.frame.user_events` (one `customer_id` rule for
every analysis), so it runs unchanged on DuckDB and Spark; `customer_table` pulls it to
pandas. Everything is measured at a cutoff c (UTC):

- the population is every customer with at least one `Order Completed` before c;
- features read only events with timestamp < c (nothing at or after c can change them);
- the label reads only [c, c + horizon): `churned` = 1 when the customer has no purchase
  there (`target="purchase"`) or no activity at all (`target="activity"`; activity is any
  event but those the shop sends, `PASSIVE_EVENTS`).

Features (days are 86 400 s, windows end at c; "shares" are of all the customer's events):

- `recency_days` since the last order, `frequency` (orders), `monetary` (their revenue),
  `average_order_value`, `tenure_days` since the first event, `days_since_activity`;
- `sessions_30d`, `sessions_30_90d` (web and app visits with a page or screen view, cut
  by `insights.sessions`, counted by start in [c-30d, c) and [c-90d, c-30d)) and `session_trend` =
  ln((sessions_30d + 1) / (sessions_30_90d / 2 + 1)), the change of the monthly rate;
- `share_web`, `share_app`, `share_store`, `share_email`: the channel mix;
- email events of channel email: `email_opens`, `email_clicks` (`Email Link Clicked`) in
  all and in the last 90 days, `unsubscribed` (0/1), `days_since_email_open` (NaN: never);
- `feedback_responses` and their mean `feedback_score` (property `score` of
  `Survey Responded`; NaN without one);
- `support_contacts` in all and in the last 90 days (events named in `SUPPORT_EVENTS`).

Identities are those of the last build, which may already know links made after c.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.identity.config import IdentityConfig
from touchpoints.insights.frame import USER, user_events
from touchpoints.insights.sessions import DEFAULT_TIMEOUT, VIEW_TYPES, sessionize
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import epoch_micros, json_text

Target = Literal["purchase", "activity"]

ORDER_EVENT = "Order Completed"
SURVEY_EVENT = "Survey Responded"
#: Track events that mean the customer contacted support (no Segment spec names one).
SUPPORT_EVENTS = ("Support Ticket Created", "Support Contacted", "Ticket Created", "Chat Started")
#: Events the shop sends rather than the customer does: not activity.
PASSIVE_EVENTS = ("Email Delivered", "Email Bounced", "Email Sent")
DAY_US = 86_400 * 1_000_000

FEATURES = (
    "recency_days", "frequency", "monetary", "average_order_value", "tenure_days",
    "days_since_activity", "sessions_30d", "sessions_30_90d", "session_trend",
    "share_web", "share_app", "share_store", "share_email",
    "email_opens", "email_opens_90d", "email_clicks", "email_clicks_90d", "unsubscribed",
    "days_since_email_open", "feedback_responses", "feedback_score",
    "support_contacts", "support_contacts_90d",
)  # fmt: skip
LABEL = "churned"


def as_utc(moment: datetime, field: str = "cutoff") -> datetime:
    """A cutoff as an aware UTC datetime (naive ones are taken as UTC)."""
    if not isinstance(moment, datetime):
        raise InvalidInput(f"{field} must be a datetime", field=field)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _is_track(events: ir.Table, names: Sequence[str]) -> ir.BooleanValue:
    return (events.type == "track") & events.event.isin(list(names) or [""])


def is_activity(events: ir.Table) -> ir.BooleanValue:
    """True for events the customer did (everything but `PASSIVE_EVENTS`)."""
    return events.event.isnull() | ~events.event.isin(list(PASSIVE_EVENTS))


def churn_features(
    events: ir.Table,
    cutoff: datetime,
    *,
    support_events: Sequence[str] = SUPPORT_EVENTS,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> ir.Table:
    """One row per customer who ordered before `cutoff`: `USER` and `FEATURES` (see the
    module docstring), from the events (with `USER`) strictly before the cutoff."""
    cutoff = as_utc(cutoff)
    c_us = _micros(cutoff)
    past = events.filter(events.timestamp < cutoff)
    past = past.mutate(_us=epoch_micros(past.timestamp))
    recent = past._us >= c_us - 90 * DAY_US
    order = _is_track(past, [ORDER_EVENT])
    email = past.channel == "email"
    opened = email & _is_track(past, ["Email Opened"])
    clicked = email & _is_track(past, ["Email Link Clicked"])
    survey = _is_track(past, [SURVEY_EVENT])
    support = _is_track(past, support_events)
    score = json_text(past.properties, "score").try_cast("float64")
    agg = past.group_by(USER).aggregate(
        frequency=past.count(where=order),
        monetary=past.revenue.sum(where=order).fill_null(0.0),
        _last_order=past._us.max(where=order),
        _first=past._us.min(),
        _last_active=past._us.max(where=is_activity(past)),
        _events=past.count(),
        **{f"_{ch}": past.count(where=past.channel == ch) for ch in ("web", "app", "store")},
        _email=past.count(where=email),
        email_opens=past.count(where=opened),
        email_opens_90d=past.count(where=opened & recent),
        email_clicks=past.count(where=clicked),
        email_clicks_90d=past.count(where=clicked & recent),
        unsubscribed=past.count(where=email & _is_track(past, ["Unsubscribed"])),
        _last_open=past._us.max(where=opened),
        feedback_responses=past.count(where=survey),
        feedback_score=score.mean(where=survey & score.notnull()),
        support_contacts=past.count(where=support),
        support_contacts_90d=past.count(where=support & recent),
    )
    agg = agg.filter(agg.frequency > 0)

    visits = sessionize(past.filter(past.channel.isin(["web", "app"])), timeout)
    starts = visits.group_by([USER, "session_id"]).aggregate(
        _start=visits.ts_us.min(), _views=visits.count(where=visits.type.isin(VIEW_TYPES))
    )
    starts = starts.filter(starts._views > 0)
    since = c_us - starts._start
    counts = starts.group_by(USER).aggregate(
        sessions_30d=starts.count(where=since <= 30 * DAY_US),
        sessions_30_90d=starts.count(where=(since > 30 * DAY_US) & (since <= 90 * DAY_US)),
    )
    counts = counts.rename(_who=USER)
    t = agg.left_join(counts, agg[USER] == counts._who)
    s30, s90 = t.sessions_30d.fill_null(0), t.sessions_30_90d.fill_null(0)

    def days(column: ir.IntegerValue) -> ir.FloatingValue:
        return (ibis.literal(c_us, "int64") - column) / float(DAY_US)

    values = {
        "recency_days": days(t._last_order),
        "frequency": t.frequency,
        "monetary": t.monetary,
        "average_order_value": t.monetary / t.frequency,
        "tenure_days": days(t._first),
        "days_since_activity": days(t._last_active),
        "sessions_30d": s30,
        "sessions_30_90d": s90,
        "session_trend": ((s30 + 1.0) / (s90 / 2.0 + 1.0)).ln(),
        "share_web": t._web / t._events,
        "share_app": t._app / t._events,
        "share_store": t._store / t._events,
        "share_email": t._email / t._events,
        "email_opens": t.email_opens,
        "email_opens_90d": t.email_opens_90d,
        "email_clicks": t.email_clicks,
        "email_clicks_90d": t.email_clicks_90d,
        "unsubscribed": ibis.ifelse(t.unsubscribed > 0, 1, 0),
        "days_since_email_open": days(t._last_open),
        "feedback_responses": t.feedback_responses,
        "feedback_score": t.feedback_score,
        "support_contacts": t.support_contacts,
        "support_contacts_90d": t.support_contacts_90d,
    }
    return t.select(t[USER], **{name: values[name].cast("float64") for name in FEATURES})


def churn_labels(
    events: ir.Table, cutoff: datetime, horizon: timedelta, *, target: Target = "purchase"
) -> ir.Table:
    """`USER` and `churned` (0/1) for each customer who ordered before `cutoff`: 1 when no
    purchase (or, by `target`, no activity) falls in [cutoff, cutoff + horizon)."""
    cutoff, horizon, target = as_utc(cutoff), _horizon(horizon), _target(target)
    order = _is_track(events, [ORDER_EVENT])
    population = events.filter(order & (events.timestamp < cutoff)).select(USER).distinct()
    inside = (events.timestamp >= cutoff) & (events.timestamp < cutoff + horizon)
    kept = order if target == "purchase" else is_activity(events)
    back = events.filter(inside & kept).select(_who=events[USER]).distinct()
    joined = population.left_join(back, population[USER] == back._who)
    return joined.select(joined[USER], churned=ibis.ifelse(joined._who.isnull(), 1, 0))


def customer_table(
    warehouse: Warehouse,
    cutoff: datetime,
    horizon: timedelta | None = None,
    *,
    target: Target = "purchase",
    config: IdentityConfig | None = None,
    support_events: Sequence[str] = SUPPORT_EVENTS,
) -> pd.DataFrame:
    """The features at `cutoff` (and, with a horizon, the label) as a pandas frame indexed
    by `customer_id`, sorted. The cutoff must fall after the first event and, with a
    horizon, the label window must end by the last event, so that no label is cut short."""
    cutoff = as_utc(cutoff)
    if horizon is not None:
        horizon, target = _horizon(horizon), _target(target)
    raw = warehouse.table("events")
    span = raw.aggregate(first=raw.timestamp.min(), last=raw.timestamp.max()).to_pyarrow()
    first, last = span["first"][0].as_py(), span["last"][0].as_py()
    if first is None or cutoff <= as_utc(first):
        raise InvalidInput(f"the cutoff {cutoff:%Y-%m-%d} is before the data", field="cutoff")
    if horizon is not None and cutoff + horizon > as_utc(last):
        raise InvalidInput(
            f"the label window up to {cutoff + horizon:%Y-%m-%d %H:%M} runs past the last "
            f"event ({as_utc(last):%Y-%m-%d %H:%M}); choose an earlier cutoff",
            field="cutoff",
        )
    events = user_events(warehouse, config=config)
    table = churn_features(events, cutoff, support_events=support_events)
    if horizon is not None:
        labels = churn_labels(events, cutoff, horizon, target=target).rename(_who=USER)
        table = table.join(labels, table[USER] == labels._who).drop("_who")
    frame = table.to_pyarrow().to_pandas()
    return frame.set_index(USER).sort_index()


def _horizon(horizon: timedelta) -> timedelta:
    if not isinstance(horizon, timedelta) or horizon <= timedelta(0):
        raise InvalidInput("the horizon must be a positive duration", field="horizon")
    return horizon


def _target(target: str) -> Target:
    if target not in ("purchase", "activity"):
        raise InvalidInput(
            f"target must be 'purchase' or 'activity', not {target!r}", field="target"
        )
    return target  # type: ignore[return-value]


__all__ = [
    "FEATURES",
    "LABEL",
    "PASSIVE_EVENTS",
    "SUPPORT_EVENTS",
    "Target",
    "as_utc",
    "churn_features",
    "churn_labels",
    "customer_table",
    "is_activity",
]
