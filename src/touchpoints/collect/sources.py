"""Sources of events and their write keys.

A source is one website, app, till system or server that sends events; its channel is
the default channel of those events. The write key is printed once and stored hashed.
Its `settings` JSON holds its consent mode (`consent_mode`, touchpoints.collect.consent)
and what it keeps of client IP addresses (`ip_mode`, touchpoints.collect.ip).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from touchpoints.collect.consent import DEFAULT_MODE, mode_from_settings
from touchpoints.collect.ip import (
    DEFAULT_IP_MODE,
    IP_SETTING,
    UNSET_IP_MODE,
    check_ip_mode,
    ip_mode_from_settings,
    ip_secret,
)
from touchpoints.collect.keys import WRITE_KEY_PREFIX, hash_key, new_key
from touchpoints.collect.source_settings import put_source_setting
from touchpoints.errors import Conflict, InvalidInput
from touchpoints.warehouse import CHANNELS, Warehouse

#: How long a write key found unknown is not looked up again (keys made by another
#: process through the CLI while no server ran are picked up after this).
UNKNOWN_TTL = 5.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Source:
    source_id: str
    name: str
    channel: str
    write_key_prefix: str
    created_at: datetime
    #: consent: the collection mode (see touchpoints.collect.consent), from `settings`
    consent_mode: str = DEFAULT_MODE
    #: what is kept of client IP addresses (see touchpoints.collect.ip), from `settings`
    ip_mode: str = UNSET_IP_MODE

    def as_dict(self) -> dict[str, str]:
        return {
            "source_id": self.source_id,
            "name": self.name,
            "channel": self.channel,
            "write_key_prefix": self.write_key_prefix,
            "created_at": self.created_at.isoformat(),
            "consent_mode": self.consent_mode,
            "ip_mode": self.ip_mode,
        }


@dataclass(frozen=True, slots=True)
class NewSource:
    """A source just made, with its write key: the only time the key is known."""

    source: Source
    write_key: str


def add_source(
    warehouse: Warehouse, name: str, channel: str = "web", ip_mode: str = DEFAULT_IP_MODE
) -> NewSource:
    """Create a source and its write key; `ip_mode` says what it keeps of client IP
    addresses (touchpoints.collect.ip; `truncate` unless told)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            "a source name is 1–63 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit",
            field="name",
        )
    if channel not in CHANNELS:
        raise InvalidInput(
            f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}", field="channel"
        )
    ip_mode = check_ip_mode(ip_mode)
    if any(s.name == name for s in list_sources(warehouse)):
        raise Conflict(f"a source named {name!r} exists already", field="name")
    key = new_key(WRITE_KEY_PREFIX)
    source = Source(
        source_id="src_" + hash_key(key)[:12],
        name=name,
        channel=channel,
        write_key_prefix=key[:8],
        created_at=datetime.now(UTC),
        ip_mode=ip_mode,
    )
    if ip_mode == "hash":
        ip_secret(warehouse)  # made now, not by the collector's first request
    warehouse.insert(
        "sources",
        pa.table(
            {
                "source_id": [source.source_id],
                "name": [name],
                "channel": [channel],
                "write_key_hash": [hash_key(key)],
                "write_key_prefix": [source.write_key_prefix],
                "created_at": pa.array([source.created_at], pa.timestamp("us", tz="UTC")),
                "settings": [orjson.dumps({IP_SETTING: ip_mode}).decode()],
            }
        ),
    )
    return NewSource(source, key)


def list_sources(warehouse: Warehouse) -> list[Source]:
    table = warehouse.table("sources").order_by("created_at")
    return [_source(row) for row in table.to_pyarrow().to_pylist()]


def find_source(warehouse: Warehouse, name: str) -> Source | None:
    return next((s for s in list_sources(warehouse) if s.name == name), None)


def _source(row: dict) -> Source:
    return Source(
        row["source_id"],
        row["name"],
        row["channel"],
        row["write_key_prefix"],
        row["created_at"],
        mode_from_settings(row.get("settings")),  # consent
        ip_mode_from_settings(row.get("settings")),
    )


def set_ip_mode(warehouse: Warehouse, source_id: str, mode: str) -> str:
    """Store what a source keeps of client IP addresses in its `settings` JSON; returns
    the previous mode. A running collector sees it once its cache forgets the source
    (`SourceRegistry.forget`); events stored before are not changed."""
    mode = check_ip_mode(mode)
    if mode == "hash":
        ip_secret(warehouse)
    return ip_mode_from_settings(put_source_setting(warehouse, source_id, IP_SETTING, mode))


class SourceRegistry:
    """Looks write keys up by hash, caching what it found; a miss asks the warehouse."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._by_hash: dict[str, Source] = {}
        self._unknown: dict[str, float] = {}  # hash -> when it was last found missing
        self._lock = threading.Lock()
        self._ip_secret: bytes | None = None

    def cached(self, write_key: str) -> Source | None:
        """The source of a key seen before, without touching the warehouse."""
        return self._by_hash.get(hash_key(write_key))

    def lookup(self, write_key: str) -> Source | None:
        """The source of a key, asking the warehouse on a miss (call it off the event
        loop: it may wait for the warehouse lock)."""
        digest = hash_key(write_key)
        found = self._by_hash.get(digest)
        if found is not None:
            return found
        if time.monotonic() - self._unknown.get(digest, -UNKNOWN_TTL) < UNKNOWN_TTL:
            return None  # asked a moment ago: do not query the warehouse again
        with self._lock, self._warehouse.lock:
            table = self._warehouse.table("sources")
            rows = table.filter(table.write_key_hash == digest).to_pyarrow().to_pylist()
            if not rows:
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown[digest] = time.monotonic()
                return None
            source = _source(rows[0])
            self._by_hash[digest] = source
            return source

    def cached_ip_secret(self) -> bytes | None:
        """The warehouse's secret for hashing IP addresses, once read."""
        return self._ip_secret

    def ip_secret(self) -> bytes:
        """The secret for hashing IP addresses (touchpoints.collect.ip), read (or made)
        once; call it off the event loop."""
        if self._ip_secret is None:
            self._ip_secret = ip_secret(self._warehouse)
        return self._ip_secret

    def forget(self, source_id: str) -> None:
        """Drop a source from the cache (its settings changed): the next request with
        its key reads it again. (consent: collection modes) No lock: `lookup` holds its
        own while it waits for the warehouse's, which a caller of this may hold."""
        for digest, source in list(self._by_hash.items()):
            if source.source_id == source_id:
                self._by_hash.pop(digest, None)

    def remember(self, new: NewSource) -> None:
        digest = hash_key(new.write_key)
        self._by_hash[digest] = new.source
        self._unknown.pop(digest, None)
