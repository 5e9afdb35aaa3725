"""The `feedback` and `mentions` importers: survey answers ("Survey Responded") and
social posts that mention the brand ("Brand Mentioned"), one track event per row."""

from __future__ import annotations

from typing import Any

from touchpoints.collect.importers.reading import Column
from touchpoints.collect.importers.runner import ImportReport, Options, run_events
from touchpoints.collect.importers.values import (
    RowError,
    customer_keys,
    identify,
    iso,
    message_id,
    optional_count,
    parse_decimal,
    parse_time,
    plain_number,
    required_text,
    text,
)
from touchpoints.warehouse import CHANNELS, Warehouse

FEEDBACK_COLUMNS = (
    Column("score", True, ("rating", "nps", "csat", "answer_score")),
    Column("comment", False, ("comments", "feedback", "answer", "verbatim", "text")),
    Column("timestamp", True, ("time", "date", "submitted_at", "responded_at", "created_at")),
    Column("email", False, ("email_address",)),
    Column("user_id"),
    Column("phone"),
    Column("loyalty_id", False, ("loyalty_card",)),
    Column("survey", False, ("survey_name", "survey_id")),
    Column("question", False, ("question_text",)),
    Column("response_id", False, ("response",)),
    Column("channel"),
)

MENTION_COLUMNS = (
    Column("platform", True, ("network", "site", "source")),
    Column("author_handle", True, ("author", "handle", "username", "user", "screen_name")),
    Column("text", False, ("content", "message", "post", "body")),
    Column("timestamp", True, ("time", "date", "created_at", "published_at", "posted_at")),
    Column("reach", False, ("impressions", "views")),
    Column("likes", False, ("like_count", "reactions")),
    Column("url", False, ("link", "permalink", "post_url")),
)

#: Loose names a survey tool may give the channel an answer came through.
_CHANNEL_WORDS = {
    "website": "web",
    "online": "web",
    "mobile": "app",
    "in_app": "app",
    "pos": "store",
    "in_store": "store",
    "shop": "store",
    "e_mail": "email",
}


def _row_channel(value: Any) -> str | None:
    raw = text(value)
    if raw is None:
        return None
    word = raw.lower().replace("-", "_").replace(" ", "_")
    word = _CHANNEL_WORDS.get(word, word)
    if word not in CHANNELS:
        raise RowError("channel", f"{raw[:40]!r} is not one of {', '.join(CHANNELS)}")
    return word


def build_feedback(values: dict[str, Any]) -> dict[str, Any]:
    """One answer -> "Survey Responded", keyed by its response id and question, else by
    customer, survey, question and time."""
    score_text = text(values.get("score"))
    comment = text(values.get("comment"))
    if score_text is None and comment is None:
        raise RowError("score", "no score and no comment")
    score = None if score_text is None else plain_number(parse_decimal(values["score"], "score"))
    moment = iso(parse_time(values.get("timestamp"), "timestamp"))
    keys = customer_keys(values)
    survey, question = text(values.get("survey")), text(values.get("question"))
    response = text(values.get("response_id"))
    if response is not None:
        natural: tuple[Any, ...] = ("response", response, survey, question)
    else:
        natural = ("answer", *(keys.get(k) for k in sorted(keys)), survey, question, moment)
    if not keys and response is None:
        raise RowError("email", "no customer key (email, user_id, phone or loyalty_id)")
    properties = {
        key: value
        for key, value in (
            ("score", score),
            ("comment", comment),
            ("survey", survey),
            ("question", question),
            ("response_id", response),
        )
        if value is not None
    }
    message: dict[str, Any] = {
        "type": "track",
        "event": "Survey Responded",
        "timestamp": moment,
        "properties": properties,
        "messageId": message_id("feedback", *natural),
    }
    channel = _row_channel(values.get("channel"))
    if channel is not None:
        message["channel"] = channel
    identify(message, keys, f"response:{response}" if response is not None else None)
    return message


def build_mention(values: dict[str, Any]) -> dict[str, Any]:
    """One post -> "Brand Mentioned" by anonymousId social:<platform>:<handle>, keyed by
    its link, else by platform, handle, time and text."""
    platform = required_text(values, "platform").lower()
    handle = required_text(values, "author_handle").lstrip("@")
    if not handle:
        raise RowError("author_handle", "no value")
    moment = iso(parse_time(values.get("timestamp"), "timestamp"))
    post, url = text(values.get("text")), text(values.get("url"))
    properties = {
        key: value
        for key, value in (
            ("platform", platform),
            ("author_handle", handle),
            ("text", post),
            ("reach", optional_count(values.get("reach"), "reach")),
            ("likes", optional_count(values.get("likes"), "likes")),
            ("url", url),
        )
        if value is not None
    }
    natural = ("url", url) if url is not None else ("post", platform, handle.lower(), moment, post)
    return {
        "type": "track",
        "event": "Brand Mentioned",
        "anonymousId": f"social:{platform}:{handle.lower()}",
        "timestamp": moment,
        "properties": properties,
        "messageId": message_id("mentions", *natural),
    }


def import_feedback(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load survey answers (CSV or Parquet) as "Survey Responded" events."""
    return run_events(warehouse, options, FEEDBACK_COLUMNS, "other", build_feedback)


def import_mentions(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load social posts mentioning the brand (CSV or Parquet) as "Brand Mentioned"."""
    return run_events(warehouse, options, MENTION_COLUMNS, "social", build_mention)
