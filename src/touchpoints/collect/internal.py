"""Events the platform records itself (email sends, opens and clicks): through the same
normalisation and durable writer as the collector's, under a source of its own.

Each such source is an ordinary row of `sources` (found by name, made on first use) so
that its events are attributed and filtered like any other; nobody holds its write key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.collect.sources import Source, add_source, find_source
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import EventWriter

__all__ = ["internal_source", "record_events"]


def internal_source(warehouse: Warehouse, name: str, channel: str) -> Source:
    """The source named `name`, made (with a key nobody keeps) if it does not exist."""
    with warehouse.lock:
        found = find_source(warehouse, name)
        if found is None:
            found = add_source(warehouse, name, channel, "drop").source
        return found


def record_events(writer: EventWriter, source: Source, messages: Sequence[dict[str, Any]]) -> int:
    """Normalise Segment `messages` as the collector does and write them durably; an
    invalid one raises (these are built by the platform, so that is a bug, not input)."""
    envelope = Envelope(source.source_id, source.channel, now_us())
    rows = [normalize(message, envelope) for message in messages]
    if rows:
        writer.write(rows)
    return len(rows)
