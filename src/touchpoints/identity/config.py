"""How identifiers are read, normalised and limited: data, not branches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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
