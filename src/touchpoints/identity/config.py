"""How identifiers are read, normalised and limited: data, not branches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from touchpoints.errors import InvalidInput

#: The most identifiers of each kind that one identifier may be linked to before it is
#: quarantined. A browser links to one user id, a person to a few emails or phones,
#: a user id to many browsers; a shop's shared tablet or a placeholder email to hundreds.
DEFAULT_MAX_LINKS: Mapping[str, int] = MappingProxyType(
    {
        "user_id": 3,
        "email": 5,
        "phone": 5,
        "loyalty_id": 5,
        "anonymous_id": 1000,
    }
)


@dataclass(frozen=True)
class IdentityConfig:
    """Settings of identity resolution.

    - `country_code`: calling code put before national phone numbers (no `+` or `00`).
    - `strip_plus_addressing`: treat `ana+news@example.com` as `ana@example.com`.
    - `traits`: extra trait keys that identify a person (each becomes its own kind).
    - `max_links`: see DEFAULT_MAX_LINKS; a kind not listed is not limited.
    """

    country_code: str = "1"
    strip_plus_addressing: bool = False
    traits: tuple[str, ...] = ()
    max_links: Mapping[str, int] = field(default_factory=lambda: DEFAULT_MAX_LINKS)

    def to_json(self) -> str:
        """The settings as JSON (stored in the warehouse with each build)."""
        return json.dumps(
            {
                "country_code": self.country_code,
                "strip_plus_addressing": self.strip_plus_addressing,
                "traits": list(self.traits),
                "max_links": dict(self.max_links),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> IdentityConfig:
        return cls().updated(**json.loads(text))

    def updated(self, **changes: Any) -> IdentityConfig:
        """A copy with `changes` applied and checked (for settings from users)."""
        unknown = set(changes) - {"country_code", "strip_plus_addressing", "traits", "max_links"}
        if unknown:
            raise InvalidInput(f"unknown identity setting {sorted(unknown)[0]!r}", field="identity")
        if "country_code" in changes and not str(changes["country_code"]).isdigit():
            raise InvalidInput("country_code is digits only, e.g. 44", field="country_code")
        limits = changes.get("max_links")
        if limits is not None:
            if not all(isinstance(v, int) and v >= 1 for v in dict(limits).values()):
                raise InvalidInput(
                    "each max_links limit is a whole number of at least 1", field="max_links"
                )
            changes["max_links"] = dict(limits)
        if "traits" in changes:
            changes["traits"] = tuple(str(t) for t in changes["traits"])
        if "country_code" in changes:
            changes["country_code"] = str(changes["country_code"])
        return replace(self, **changes)
