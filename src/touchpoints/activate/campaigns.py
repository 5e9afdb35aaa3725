"""Email campaigns: who receives it (an audience), what it says (templates), why it may
be sent (the consent purpose), and what it offers (a coupon, recommendations).

A campaign without an audience is a template that triggers send to one person at a
time (`touchpoints.activate.triggers`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from touchpoints.activate.email_render import check_templates
from touchpoints.errors import InvalidInput
from touchpoints.privacy.consent_config import load_config
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import (
    delete_definition,
    load_definition,
    load_definitions,
    store_definition,
)

__all__ = ["delete_campaign", "get_campaign", "list_campaigns", "parse_campaign", "save_campaign"]

TABLE, KEY = "campaigns", "campaign_id"
CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
FIELDS = (
    "campaign_id",
    "name",
    "audience",
    "subject",
    "text",
    "html",
    "purpose",
    "offer_id",
    "recommendations",
)


def parse_campaign(warehouse: Warehouse, body: Any) -> dict[str, Any]:
    """A checked campaign definition; InvalidInput naming the first bad field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a campaign is a JSON object", field="body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    campaign_id = body.get("campaign_id")
    if not isinstance(campaign_id, str) or not CAMPAIGN_ID.match(campaign_id):
        raise InvalidInput(
            "campaign_id is 1–63 lower-case letters, digits, '_' or '-'", field="campaign_id"
        )
    for field in ("subject", "text"):
        if not isinstance(body.get(field), str) or not body[field].strip():
            raise InvalidInput(f"{field} is required (template text)", field=field)
    check_templates(body)
    for field in ("name", "audience", "offer_id"):
        value = body.get(field)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 100):
            raise InvalidInput(f"{field} is a name of at most 100 characters", field=field)
    purpose = load_config(warehouse).check_purpose(body.get("purpose", "email_marketing"))
    count = body.get("recommendations", 3)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 20:
        raise InvalidInput(
            "recommendations is how many products to offer, 0 to 20", field="recommendations"
        )
    return {
        "campaign_id": campaign_id,
        "name": body.get("name") or campaign_id,
        "audience": body.get("audience"),
        "subject": body["subject"],
        "text": body["text"],
        "html": body.get("html"),
        "purpose": purpose,
        "offer_id": body.get("offer_id"),
        "recommendations": count,
    }


def save_campaign(warehouse: Warehouse, body: Any) -> dict[str, Any]:
    """Create or replace a campaign; returns it as stored."""
    campaign = parse_campaign(warehouse, body)
    store_definition(warehouse, TABLE, KEY, campaign["campaign_id"], campaign)
    return campaign


def get_campaign(warehouse: Warehouse, campaign_id: str) -> dict[str, Any]:
    return load_definition(warehouse, TABLE, KEY, campaign_id, "campaign")


def list_campaigns(warehouse: Warehouse) -> list[dict[str, Any]]:
    return load_definitions(warehouse, TABLE, KEY)


def delete_campaign(warehouse: Warehouse, campaign_id: str) -> None:
    delete_definition(warehouse, TABLE, KEY, campaign_id, "campaign")
