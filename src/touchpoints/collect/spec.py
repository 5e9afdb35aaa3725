"""The Segment message spec as data: types, required fields, limits.

Adding a rule means adding a row here, not a branch in the normaliser.
"""

from __future__ import annotations

from typing import Final

#: Message types and the fields each requires besides an identity.
REQUIRED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "track": ("event",),
    "page": (),
    "screen": (),
    "identify": (),
    "group": ("groupId",),
    "alias": ("previousId", "userId"),
}

#: The short paths analytics.js posts to when its apiHost points at us.
SHORT_PATHS: Final[dict[str, str]] = {
    "t": "track",
    "p": "page",
    "s": "screen",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "b": "batch",
}

#: Fields that, when present, must be JSON objects.
OBJECT_FIELDS: Final[tuple[str, ...]] = ("properties", "traits", "context", "integrations")

#: Identity fields: strings, or numbers which are kept as their decimal text.
ID_FIELDS: Final[tuple[str, ...]] = ("userId", "anonymousId", "groupId", "previousId")

#: Every top-level field a message may carry; used to suggest the closest name.
KNOWN_FIELDS: Final[tuple[str, ...]] = (
    "type", "event", "name", "category", "userId", "anonymousId", "groupId", "previousId",
    "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "properties",
    "traits", "context", "integrations", "channel", "writeKey", "version", "_metadata",
)  # fmt: skip


class Limits:
    """Segment's HTTP Tracking API limits, in bytes of decompressed JSON."""

    EVENT_BYTES: Final = 32 * 1024
    BATCH_BYTES: Final = 500 * 1024
    BATCH_EVENTS: Final = 2500
    MESSAGE_ID_CHARS: Final = 100  # a messageId must be shorter than this
