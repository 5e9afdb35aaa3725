"""`touchpoints build`: identities, then profiles."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.profiles import build_profiles
from touchpoints.identity.resolve import SETTINGS, resolve
from touchpoints.warehouse import Warehouse


def build(
    warehouse: Warehouse,
    config: IdentityConfig | None = None,
    *,
    full: bool = False,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve identities and rebuild the profiles; returns what was made. `settings`
    change the identity settings of the last build (see IdentityConfig.updated)."""
    if settings:
        stored = warehouse.get_meta(SETTINGS)
        base = config or (IdentityConfig.from_json(stored) if stored else IdentityConfig())
        config = base.updated(**settings)
    summary = resolve(warehouse, config, full=full)
    profiles = build_profiles(warehouse)
    return {**asdict(summary), "profiles": profiles}
