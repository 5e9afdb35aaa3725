"""Validate one Segment message and turn it into a row of the `events` table.

Pure functions of the message, the batch it came in and the request, so the same
rules serve the HTTP collector, the importers and the demo generator.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from touchpoints.collect.spec import (
    ID_FIELDS,
    KNOWN_FIELDS,
    OBJECT_FIELDS,
    REQUIRED_FIELDS,
    Limits,
)
from touchpoints.collect.text_privacy import mask_properties
from touchpoints.errors import InvalidInput, PayloadTooLarge
from touchpoints.warehouse.schema import CHANNELS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTM_KEYS = (("source", "source"), ("medium", "medium"), ("campaign", "name"),
             ("term", "term"), ("content", "content"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the request adds to each message: who sent it, when, and from where."""

    source_id: str
    channel: str
    received_at_us: int
    ip: str | None = None
    sent_at_us: int | None = None
    context: Mapping[str, Any] | None = None
    integrations: Mapping[str, Any] | None = None
    #: Encoded size of the batch's context and integrations, added to each message's.
    extra_bytes: int = 0


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    delta = datetime.now(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def normalize(
    message: Any,
    envelope: Envelope,
    *,
    kind: str | None = None,
    where: str = "",
    check_size: bool = True,
) -> dict[str, Any]:
    """Check `message` against the spec and return its `events` row.

    `kind` is the type the endpoint implies (``/v1/track``); in a batch each message
    names its own. Raises InvalidInput naming the field (prefixed by `where`). The JSON
    columns (properties, traits, context, integrations) are returned as objects; the
    writer stores them as JSON text. `check_size=False` skips the 32 KB check when the
    caller knows the whole body is smaller.
    """
    if not isinstance(message, dict):
        raise InvalidInput("a message must be a JSON object", field=where or "body")
    prefix = f"{where}." if where else ""
    message_type = kind or message.get("type")
    if not isinstance(message_type, str) or message_type not in REQUIRED_FIELDS:
        raise InvalidInput(
            "type must be one of "
            + ", ".join(REQUIRED_FIELDS)
            + (
                f", not {str(message_type)[:40]!r}"
                if message_type is not None
                else " and is missing"
            ),
            field=prefix + "type",
        )
    if kind is not None and message.get("type") not in (None, kind):
        raise InvalidInput(
            f"type {message.get('type')!r} does not match the endpoint /v1/{kind}",
            field=prefix + "type",
        )
    size = encoded_size(message, where) if check_size or envelope.extra_bytes else 0
    size += envelope.extra_bytes
    if size > Limits.EVENT_BYTES:
        raise PayloadTooLarge(
            f"the message is {size} bytes with the batch's context, over the limit of "
            f"{Limits.EVENT_BYTES}",
            field=where or "body",
        )
    for name in OBJECT_FIELDS:
        value = message.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidInput(f"{name} must be a JSON object", field=prefix + name)
    ids = {name: _identifier(message.get(name), prefix + name) for name in ID_FIELDS}
    if ids["userId"] is None and ids["anonymousId"] is None:
        raise InvalidInput(
            "userId or anonymousId is required" + _suggest(message), field=prefix + "userId"
        )
    for name in REQUIRED_FIELDS[message_type]:
        value = ids[name] if name in ids else message.get(name)
        if value is None or value == "":
            raise InvalidInput(
                f"{name} is required for {message_type}" + _suggest(message), field=prefix + name
            )
    event = message.get("event")
    if event is not None and not isinstance(event, str):
        raise InvalidInput("event must be a string", field=prefix + "event")
    page_name = message.get("name")
    if page_name is not None and not isinstance(page_name, str):
        raise InvalidInput("name must be a string", field=prefix + "name")
    message_id = message.get("messageId")
    if message_id is None:
        message_id = f"tp-{uuid.uuid4().hex}"
    elif not isinstance(message_id, str) or not message_id:
        raise InvalidInput("messageId must be a non-empty string", field=prefix + "messageId")
    elif len(message_id) >= Limits.MESSAGE_ID_CHARS:
        raise InvalidInput(
            f"messageId must be under {Limits.MESSAGE_ID_CHARS} characters",
            field=prefix + "messageId",
        )
    sent_at = _timestamp_us(message.get("sentAt"), prefix + "sentAt")
    if sent_at is None:
        sent_at = envelope.sent_at_us
    original = _timestamp_us(message.get("timestamp"), prefix + "timestamp")
    if original is None:
        original = _timestamp_us(message.get("originalTimestamp"), prefix + "originalTimestamp")
    received = envelope.received_at_us
    if original is None:
        timestamp = received
    elif sent_at is not None:
        # Segment's clock-skew correction: the client's clock is off by (sentAt - now).
        timestamp = received - (sent_at - original)
        if not _MIN_US <= timestamp < _MAX_US:  # nonsense clocks: trust our own
            timestamp = received
    else:
        timestamp = original

    context = _merged(envelope.context, message.get("context"))
    if envelope.ip and not context.get("ip"):
        context["ip"] = envelope.ip
    integrations = _merged(envelope.integrations, message.get("integrations"))
    properties = message.get("properties") or {}
    if message_type == "track":
        properties = mask_properties(event, properties)  # no emails or phones in free text
    traits = message.get("traits")
    if traits is None:
        traits = context.get("traits") if isinstance(context.get("traits"), dict) else None
    page = properties if message_type == "page" else {}
    context_page = context.get("page") if isinstance(context.get("page"), dict) else {}
    page_url = _text(page.get("url") or context_page.get("url"))
    campaign = context.get("campaign") if isinstance(context.get("campaign"), dict) else {}
    utm = _utm_from_url(page_url) if not campaign else {}

    row = {
        "message_id": message_id,
        "source_id": envelope.source_id,
        "type": message_type,
        "event": event if message_type == "track" else None,
        "name": page_name if message_type in ("page", "screen") else None,
        "anonymous_id": ids["anonymousId"],
        "user_id": ids["userId"],
        "group_id": ids["groupId"],
        "previous_id": ids["previousId"],
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": received,
        "channel": _channel(message, context, envelope.channel),
        "page_url": page_url,
        "page_path": _text(page.get("path") or context_page.get("path")) or _path(page_url),
        "page_title": _text(page.get("title") or context_page.get("title")),
        "page_referrer": _text(page.get("referrer") or context_page.get("referrer")),
        "user_agent": _text(context.get("userAgent")),
        "ip": _text(context.get("ip")),
        "locale": _text(context.get("locale")),
        "revenue": _number(properties, prefix + "properties"),
        "currency": _text(properties.get("currency")),
        "order_id": _text(properties.get("order_id", properties.get("orderId"))),
        "properties": properties or None,
        "traits": traits or None,
        "context": context or None,
        "integrations": integrations or None,
    }
    for column, key in _UTM_KEYS:
        row["utm_" + column] = _text(campaign.get(key)) if campaign else utm.get(column)
    return row


_MIN_US = 0
_MAX_US = 7_258_118_400 * 1_000_000  # 2200-01-01


def encoded_size(value: Any, field: str) -> int:
    """Bytes of `value` as JSON; InvalidInput when JSON cannot hold it (too deep)."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise InvalidInput(
            "the message is nested too deeply (254 levels at most)", field=field or "body"
        ) from None


def _path(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).path or None
    except ValueError:
        return None


def _identifier(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput("must be a string (or a whole number)", field=field)


def timestamp_us(value: Any, field: str) -> int | None:
    """An ISO-8601 date-time as µs since the epoch (UTC when no offset is given)."""
    return _timestamp_us(value, field)


def _timestamp_us(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be an ISO-8601 date-time string", field=field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value[:40]!r} is not an ISO-8601 date-time", field=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1970 <= parsed.year <= 9000:
        raise InvalidInput("date-time out of range (1970 to 9000)", field=field)
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _number(properties: Mapping[str, Any], field: str) -> float | None:
    """`revenue` (else `total`) as a float: numbers and numeric strings, nothing else."""
    key = "revenue" if properties.get("revenue") is not None else "total"
    value = properties.get(key)
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or number != number or abs(number) == float("inf"):
        raise InvalidInput(f"{key} must be a finite number", field=f"{field}.{key}")
    return number


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _channel(message: Mapping[str, Any], context: Mapping[str, Any], default: str) -> str:
    for value in (message.get("channel"), context.get("channel")):
        if isinstance(value, str) and value in CHANNELS:
            return value
    return default


def _merged(batch: Mapping[str, Any] | None, own: Any) -> dict[str, Any]:
    merged = dict(batch) if batch else {}
    if isinstance(own, dict):
        merged.update(own)
    return merged


def _utm_from_url(url: str | None) -> dict[str, str]:
    if not url or "utm_" not in url:
        return {}
    try:
        query = urlsplit(url).query
        return {k[4:]: v for k, v in parse_qsl(query) if k.startswith("utm_") and v}
    except ValueError:
        return {}


def _suggest(message: Mapping[str, Any]) -> str:
    unknown = [key for key in message if isinstance(key, str) and key not in KNOWN_FIELDS]
    for key in unknown:
        close = difflib.get_close_matches(key, KNOWN_FIELDS, n=1, cutoff=0.75)
        if close:
            return f" (found {key!r}: did you mean {close[0]!r}?)"
    return ""
