"""The collector: a Segment HTTP Tracking API request in, durable event rows out.

Independent of the web framework: the API layer hands over the raw body, the headers
and the peer address, and renders what comes back. It answers only once the writer
says the events are durable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from touchpoints.collect.body import inflate, parse_json
from touchpoints.collect.consent import apply_mode
from touchpoints.collect.ip import IpMasker
from touchpoints.collect.keys import key_from_request
from touchpoints.collect.normalize import (
    Envelope,
    encoded_size,
    normalize,
    now_us,
    timestamp_us,
)
from touchpoints.collect.ratelimit import RateLimiter
from touchpoints.collect.sources import Source, SourceRegistry
from touchpoints.collect.spec import REQUIRED_FIELDS, Limits
from touchpoints.errors import InvalidInput, PayloadTooLarge, Unauthorized
from touchpoints.warehouse.writer import EventWriter

#: How many per-message errors a batch response lists (the table keeps them all).
MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class CollectorSettings:
    """Limits and behaviour of the collector, from the server's settings."""

    rate_limit: float = 200_000.0  # events a second per write key
    burst: float | None = None  # default: two seconds' worth
    trust_forwarded_for: bool = False  # take the client ip from X-Forwarded-For


@dataclass
class Outcome:
    """What happened to a request's messages; `body()` is the response."""

    accepted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        if not self.errors:
            return {"success": True}
        return {
            "success": True,
            "accepted": self.accepted,
            "rejected": len(self.errors),
            "errors": self.errors[:MAX_LISTED_ERRORS],
        }


class Collector:
    """Validates, normalises and stores Segment messages for known sources."""

    def __init__(
        self,
        registry: SourceRegistry,
        writer: EventWriter,
        settings: CollectorSettings | None = None,
    ) -> None:
        self.settings = settings or CollectorSettings()
        self.registry = registry
        self.writer = writer
        # a bucket must hold at least one full batch, or a big batch could never pass
        burst = max(self.settings.burst or 2 * self.settings.rate_limit, Limits.BATCH_EVENTS)
        self.limiter = RateLimiter(self.settings.rate_limit, burst)

    async def authenticate(self, headers: Mapping[str, str], document: Any) -> Source:
        key = key_from_request(headers, document)
        if key is None:
            raise Unauthorized(
                "a write key is required: send it as writeKey in the body "
                "or as the user name of HTTP Basic auth",
                field="writeKey",
            )
        source = self.registry.cached(key) or await asyncio.to_thread(self.registry.lookup, key)
        if source is None:
            raise Unauthorized("the write key is not known (revoked, or a typo)", field="writeKey")
        return source

    async def handle(
        self, kind: str, body: bytes, headers: Mapping[str, str], client_ip: str | None
    ) -> Outcome:
        """Handle one request to /v1/{kind}; raise a TouchpointsError for the response."""
        received = now_us()
        is_batch = kind in ("batch", "import")
        limit = Limits.BATCH_BYTES if is_batch else Limits.EVENT_BYTES
        data = inflate(body, headers.get("content-encoding"), limit)
        document = parse_json(data, headers.get("content-type"))
        source = await self.authenticate(headers, document)
        if not isinstance(document, dict):
            raise InvalidInput("the body must be a JSON object", field="body")
        ip = self._client_ip(headers, client_ip)
        if is_batch:
            messages = document.get("batch")
            if not isinstance(messages, list):
                raise InvalidInput("batch must be a list of messages", field="batch")
            if not messages:
                raise InvalidInput("batch is empty", field="batch")
            if len(messages) > Limits.BATCH_EVENTS:
                raise PayloadTooLarge(
                    f"the batch has {len(messages)} messages, over the limit of "
                    f"{Limits.BATCH_EVENTS}",
                    field="batch",
                )
            context = document.get("context")
            integrations = document.get("integrations")
            if context is not None and not isinstance(context, dict):
                raise InvalidInput("context must be a JSON object", field="context")
            if integrations is not None and not isinstance(integrations, dict):
                raise InvalidInput("integrations must be a JSON object", field="integrations")
            extra = sum(
                encoded_size(part, name)
                for name, part in (("context", context), ("integrations", integrations))
                if part
            )
            envelope = Envelope(
                source.source_id,
                source.channel,
                received,
                ip,
                timestamp_us(document.get("sentAt"), "sentAt"),
                context,
                integrations,
                extra_bytes=extra,
            )
        else:
            messages = [document]
            envelope = Envelope(source.source_id, source.channel, received, ip)
        self.limiter.take(source.source_id, len(messages))
        small = len(data) <= Limits.EVENT_BYTES  # then no message in it can be too large
        secret = None
        if source.ip_mode == "hash":
            secret = self.registry.cached_ip_secret() or await asyncio.to_thread(
                self.registry.ip_secret
            )
        masker = IpMasker(source.ip_mode, secret)
        return await self._store(
            kind, messages, envelope, is_batch, small, source.consent_mode, masker
        )

    async def _store(
        self,
        kind: str,
        messages: list[Any],
        envelope: Envelope,
        is_batch: bool,
        small: bool,
        consent_mode: str = "off",
        masker: IpMasker | None = None,
    ) -> Outcome:
        """Normalise and hand `messages` to the writer. `masker` applies the source's
        ip_mode (touchpoints.collect.ip) to every row and rejected payload before either
        is written; None keeps addresses as received."""
        masker = masker or IpMasker("keep")
        rows: list[dict[str, Any]] = []
        dropped = 0  # consent: left out by the source's collection mode
        rejected: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        implied = None if is_batch else kind
        for index, message in enumerate(messages):
            where = f"batch[{index}]" if is_batch else ""
            try:
                row = normalize(message, envelope, kind=implied, where=where, check_size=not small)
            except InvalidInput as exc:
                if not is_batch:
                    raise
                errors.append({"index": index, "field": exc.field, "message": exc.message})
                rejected.append(_rejected_row(masker.message(message), envelope, exc))
                continue
            masker.row(row)  # before anything is written: the spool, the tables
            # consent: the source's collection mode (touchpoints.collect.consent)
            kept = apply_mode(row, consent_mode)
            if kept is None:
                dropped += 1
            else:
                rows.append(kept)
        if not rows and not dropped:
            raise InvalidInput(
                f"none of the {len(messages)} messages is valid; the first: "
                f"{errors[0]['field']}: {errors[0]['message']}",
                field=errors[0]["field"],
                errors=errors[:MAX_LISTED_ERRORS],
            )
        if not rows and not rejected:  # consent: every message dropped by the mode
            return Outcome(dropped, errors)
        result = await asyncio.wrap_future(self.writer.submit(rows, rejected))
        return Outcome(result.accepted + dropped, errors)

    def _client_ip(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        if self.settings.trust_forwarded_for:
            forwarded = headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",", 1)[0].strip() or peer
        return peer


def _rejected_row(message: Any, envelope: Envelope, error: InvalidInput) -> dict[str, Any]:
    message_id = message.get("messageId") if isinstance(message, dict) else None
    try:
        payload = orjson.dumps(message).decode()
    except (TypeError, orjson.JSONEncodeError):
        payload = '"(not storable as JSON: nested too deeply)"'
    if len(payload) > Limits.EVENT_BYTES:
        payload = payload[: Limits.EVENT_BYTES]
    return {
        "rejected_id": uuid.uuid4().hex,
        "source_id": envelope.source_id,
        "message_id": message_id if isinstance(message_id, str) else None,
        "received_at": envelope.received_at_us,
        "field": error.field,
        "reason": error.message,
        "payload": payload,
    }


def message_types() -> tuple[str, ...]:
    return tuple(REQUIRED_FIELDS)
