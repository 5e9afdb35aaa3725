"""What `touchpoints build` runs: identities and profiles, then the consent history from
the events that carried decisions, so both are current after one command."""

from __future__ import annotations

from typing import Any

from touchpoints.identity import build
from touchpoints.privacy.consent_sync import sync_consents
from touchpoints.privacy.tombstones import relabel_returning
from touchpoints.warehouse.connection import Warehouse


def rebuild(
    warehouse: Warehouse, full: bool = False, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build identities and profiles, then sync consents; the build's summary plus
    `consents_added`."""
    summary = build(warehouse, full=full, settings=settings or {})
    relabel_returning(warehouse)  # an erased person's identifiers back: a new customer id
    return {**summary, "consents_added": sync_consents(warehouse)}
