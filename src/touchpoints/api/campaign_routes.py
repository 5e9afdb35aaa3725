"""Email campaigns over HTTP: saving and sending need an admin key; reading them and
their send log needs a read key."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.activate.campaigns import (
    delete_campaign,
    get_campaign,
    list_campaigns,
    save_campaign,
)
from touchpoints.activate.overview import activation_overview
from touchpoints.activate.sending import send_campaign, send_log
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput

router = APIRouter(prefix="/v1/campaigns", tags=["activation"])
overview_router = APIRouter(prefix="/v1/activation", tags=["activation"])


@overview_router.get("")
async def get_overview(request: Request) -> Response:
    """Counts per campaign (sends by status, opened, clicked, unsubscribed), per trigger
    (firings by outcome) and per webhook (deliveries by status)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, activation_overview, warehouse))


@router.get("")
async def get_campaigns(request: Request) -> Response:
    """Every campaign's definition."""
    await require(request, "read")
    return JSON(await off_loop(request, list_campaigns, request.app.state.services.warehouse))


@router.put("/{campaign_id}")
async def put_campaign(
    campaign_id: str, request: Request, body: dict[str, Any] = Body(...)
) -> Response:
    """Create or replace a campaign (see docs/activation.md); errors name the field."""
    await require(request, "admin")
    if body.get("campaign_id", campaign_id) != campaign_id:
        raise InvalidInput("the id in the body differs from the path", field="campaign_id")
    warehouse = request.app.state.services.warehouse
    body = {**body, "campaign_id": campaign_id}
    return JSON(await off_loop(request, save_campaign, warehouse, body))


@router.get("/{campaign_id}")
async def get_one(campaign_id: str, request: Request) -> Response:
    """A campaign and its send log (counts by status, the latest sends)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse

    def read() -> dict[str, Any]:
        return {**get_campaign(warehouse, campaign_id), "log": send_log(warehouse, campaign_id)}

    return JSON(await off_loop(request, read))


@router.delete("/{campaign_id}")
async def delete(campaign_id: str, request: Request) -> Response:
    """Remove a campaign (its send log stays: proof of what was sent)."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    await off_loop(request, delete_campaign, warehouse, campaign_id)
    return JSON({"deleted": campaign_id})


@router.post("/{campaign_id}/send")
async def post_send(campaign_id: str, request: Request) -> Response:
    """Send the campaign to its audience as it is now: everyone not sent it before whose
    consent allows it at the moment of sending. Answers the counts when done."""
    await require(request, "admin")
    services = request.app.state.services
    # not off_loop: the run takes the warehouse lock per step, never across the SMTP
    # conversation, so that unsubscribes and the collector go on meanwhile
    result = await asyncio.to_thread(
        send_campaign, services.warehouse, campaign_id, writer=services.writer, now=services.clock
    )
    return JSON(result)


@router.get("/{campaign_id}/sends")
async def get_sends(campaign_id: str, request: Request, limit: int = 100) -> Response:
    """The send log of a campaign: counts by status and the latest rows."""
    await require(request, "read")
    if not 0 < limit <= 10_000:
        raise InvalidInput("limit is 1 to 10000", field="limit")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, send_log, warehouse, campaign_id, limit=limit))
