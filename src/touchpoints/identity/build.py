"""`touchpoints build`: identities, then profiles."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.profiles import build_profiles
from touchpoints.identity.resolve import resolve
from touchpoints.warehouse import Warehouse


def build(warehouse: Warehouse, config: IdentityConfig | None = None) -> dict[str, Any]:
    """Resolve identities and rebuild the profiles; returns what was made."""
    summary = resolve(warehouse, config)
    profiles = build_profiles(warehouse)
    return {**asdict(summary), "profiles": profiles}
