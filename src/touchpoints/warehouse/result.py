"""What a write returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WriteResult:
    """How many events and rejected messages were accepted (durable, not yet deduplicated:
    a message stored before is skipped when the rows are loaded)."""

    accepted: int
    rejected: int
