"""How identifiers are read, normalised and limited: data, not branches."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from touchpoints.errors import InvalidInput

_TRAIT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

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
        data = json.loads(text)
        limits = data.pop("max_links", None)
        config = cls().updated(**data)
        # stored limits are complete: they replace the defaults, not adjust them
        return replace(config, max_links=dict(limits)) if limits is not None else config

    def updated(self, **changes: Any) -> IdentityConfig:
        """A copy with `changes` applied and checked (settings typed by users). A
        `max_links` change adjusts the limits it names and keeps the others."""
        unknown = set(changes) - {"country_code", "strip_plus_addressing", "traits", "max_links"}
        if unknown:
            raise InvalidInput(f"unknown identity setting {sorted(unknown)[0]!r}", field="identity")
        if "country_code" in changes:
            code = changes["country_code"]
            if not (
                isinstance(code, str | int)
                and not isinstance(code, bool)
                and str(code).isascii()
                and str(code).isdigit()
                and len(str(code)) <= 4
            ):
                raise InvalidInput("country_code is 1 to 4 digits, e.g. 44", field="country_code")
            changes["country_code"] = str(code)
        if "strip_plus_addressing" in changes and not isinstance(
            changes["strip_plus_addressing"], bool
        ):
            raise InvalidInput(
                "strip_plus_addressing is true or false", field="strip_plus_addressing"
            )
        if "traits" in changes:
            traits = changes["traits"]
            if not isinstance(traits, list | tuple) or not all(
                isinstance(t, str) and _TRAIT.match(t) for t in traits
            ):
                raise InvalidInput(
                    "traits is a list of trait names (letters, digits, _)", field="traits"
                )
            changes["traits"] = tuple(traits)
        if "max_links" in changes:
            limits = changes["max_links"]
            if not isinstance(limits, Mapping) or not all(
                isinstance(k, str)
                and isinstance(v, int)
                and not isinstance(v, bool)
                and 1 <= v <= 1_000_000_000
                for k, v in limits.items()
            ):
                raise InvalidInput(
                    "max_links maps kinds to whole numbers of at least 1", field="max_links"
                )
            changes["max_links"] = {**self.max_links, **limits}
        return replace(self, **changes)
