"""Personal data as the warehouse stores it: identifiers as blinds, values sealed."""

from __future__ import annotations

from typing import Any

from touchpoints.identity.lookup import candidates
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.personal import reveal_text


def stored(warehouse: Warehouse, identifier: str) -> str:
    """An identifier as `identities` holds it (emails and phones as their blinds)."""
    return candidates(warehouse, identifier)[0]


def revealed(warehouse: Warehouse, text: str | None) -> Any:
    """A stored JSON column's value with its sealed values opened."""
    return reveal_text(warehouse.vault, text)
