"""Who a message goes to: each customer's address and traits in clear (opened from the
profile, only for the moment of sending), and the ids their email events carry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.personal import reveal

__all__ = ["Recipient", "recipients"]


@dataclass(frozen=True)
class Recipient:
    customer_id: str
    email: str | None
    traits: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    anonymous_id: str | None = None

    @property
    def identity(self) -> dict[str, str]:
        """The Segment ids of their email events: their user id, else an anonymous id,
        else their customer id (so the event always joins them)."""
        if self.user_id:
            return {"userId": self.user_id}
        return {"anonymousId": self.anonymous_id or self.customer_id}


def recipients(warehouse: Warehouse, customer_ids: Sequence[str]) -> dict[str, Recipient]:
    """The recipients among `customer_ids` that have a profile (the others are absent)."""
    if not customer_ids:
        return {}
    profiles = warehouse.table("profiles")
    rows = (
        profiles.filter(profiles.customer_id.isin(list(customer_ids)))
        .select("customer_id", "identifiers", "traits")
        .to_pyarrow()
        .to_pylist()
    )
    found = {}
    for row in rows:
        traits = reveal(warehouse.vault, orjson.loads(row["traits"] or "{}"), "traits")
        traits = traits if isinstance(traits, dict) else {}
        email = traits.get("email")
        ids = row["identifiers"] or []
        found[row["customer_id"]] = Recipient(
            row["customer_id"],
            email.strip() if isinstance(email, str) and "@" in email else None,
            traits,
            _first(ids, "user_id"),
            _first(ids, "anonymous_id"),
        )
    return found


def _first(identifiers: list[str], kind: str) -> str | None:
    """The first identifier of `kind` usable as a raw id (not a blinded email)."""
    for identifier in identifiers:
        prefix, _, value = identifier.partition(":")
        if prefix == kind and value and not value.startswith("email:"):
            return value
    return None
