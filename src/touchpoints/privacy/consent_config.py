"""Consent settings: the purposes consent is asked for, which of them are allowed
without a record, and each source's collection mode.

Kept apart from the history because these are what an operator configures (stored in
`meta`, audited on change), while the consent modules below them only read them.

With no record, a purpose's default applies (`ConsentConfig.defaults`): `analytics` is
allowed (first-party measurement under legitimate interest), every other purpose —
personalization, email marketing, advertising, and any purpose configured later — is
denied until the person opts in, as GDPR expects of marketing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from touchpoints.collect.consent import set_collection_mode
from touchpoints.errors import InvalidInput
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse

__all__ = [
    "DEFAULT_PURPOSES",
    "ConsentConfig",
    "load_config",
    "save_config",
    "set_source_mode",
]

DEFAULT_PURPOSES: tuple[str, ...] = (
    "analytics",
    "personalization",
    "email_marketing",
    "advertising",
)
#: Allowed when a person has no record for the purpose (see the module docstring).
DEFAULT_ALLOWED: Mapping[str, bool] = MappingProxyType({"analytics": True})

CONFIG_KEY = "consent_settings"

_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class ConsentConfig:
    """The purposes consent is asked for, and which are allowed without a record."""

    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    defaults: Mapping[str, bool] = field(default_factory=lambda: DEFAULT_ALLOWED)

    def __post_init__(self) -> None:
        if not self.purposes or not all(
            isinstance(p, str) and _PURPOSE.match(p) for p in self.purposes
        ):
            raise InvalidInput(
                "purposes is a list of names (lower-case letters, digits, _)", field="purposes"
            )
        unknown = set(self.defaults) - set(self.purposes)
        if unknown or not all(isinstance(v, bool) for v in self.defaults.values()):
            raise InvalidInput(
                "defaults maps configured purposes to true or false", field="defaults"
            )

    def default(self, purpose: str) -> bool:
        return bool(self.defaults.get(purpose, False))

    def check_purpose(self, purpose: Any, where: str = "purpose") -> str:
        if not isinstance(purpose, str) or purpose not in self.purposes:
            raise InvalidInput(
                f"purpose must be one of {', '.join(self.purposes)}, not {str(purpose)[:40]!r}",
                field=where,
            )
        return purpose

    def to_json(self) -> str:
        return orjson.dumps(
            {"purposes": list(self.purposes), "defaults": dict(self.defaults)}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> ConsentConfig:
        data = orjson.loads(text)
        return cls(tuple(data["purposes"]), dict(data.get("defaults", {})))


def load_config(warehouse: Warehouse) -> ConsentConfig:
    """The stored consent settings, else the defaults."""
    stored = warehouse.get_meta(CONFIG_KEY)
    return ConsentConfig.from_json(stored) if stored else ConsentConfig()


def save_config(warehouse: Warehouse, config: ConsentConfig, *, actor: str = "server") -> None:
    """Keep consent settings for every later call (and audit the change)."""
    with warehouse.lock:
        warehouse.set_meta(CONFIG_KEY, config.to_json())
        audit.record(
            warehouse, actor, "consent.settings", None, None, orjson.loads(config.to_json())
        )


def set_source_mode(
    warehouse: Warehouse, source_id: str, mode: str, *, actor: str = "server"
) -> dict[str, str]:
    """Set a source's collection mode (`off`, `pseudonymous`, `drop`) and audit it."""
    with warehouse.lock:
        previous = set_collection_mode(warehouse, source_id, mode)
        audit.record(
            warehouse,
            actor,
            "source.consent_mode",
            source_id,
            None,
            {"mode": mode, "previous": previous},
        )
    return {"source_id": source_id, "consent_mode": mode, "previous": previous}
