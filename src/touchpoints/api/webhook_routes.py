"""Webhooks over HTTP: endpoints, test pings and replays need an admin key; reading the
endpoints, deliveries and dead letters needs a read key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.activate import webhooks
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput

router = APIRouter(prefix="/v1/webhooks", tags=["activation"])


@router.get("")
async def get_webhooks(request: Request) -> Response:
    """Every endpoint (never its secret)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, webhooks.list_webhooks, warehouse))


@router.get("/deliveries")
async def get_deliveries(
    request: Request, webhook: str | None = None, status: str | None = None, limit: int = 100
) -> Response:
    """The latest deliveries: status, attempts, next attempt, last error (no payloads)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    found = await off_loop(
        request, webhooks.deliveries, warehouse, webhook=webhook, status=status, limit=limit
    )
    return JSON(found)


@router.get("/dead-letters")
async def get_dead_letters(request: Request, limit: int = 100) -> Response:
    """Deliveries that failed their last attempt."""
    await require(request, "read")
    if not 0 < limit <= 10_000:
        raise InvalidInput("limit is 1 to 10000", field="limit")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, webhooks.dead_letters, warehouse, limit=limit))


@router.post("/dead-letters/replay")
async def post_replay(request: Request, body: dict[str, Any] = Body(default={})) -> Response:
    """Queue dead letters again: `{"delivery_ids": [...]}`, or `{}` for all of them."""
    await require(request, "admin")
    ids = body.get("delivery_ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise InvalidInput("delivery_ids is a list of delivery ids", field="delivery_ids")
    services = request.app.state.services
    return JSON(await off_loop(request, webhooks.replay, services.warehouse, ids,
                               now=services.clock()))  # fmt: skip


@router.put("/{name}")
async def put_webhook(name: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create or change an endpoint; the answer holds the signing `secret` only when one
    was made (a new endpoint, or `"rotate_secret": true`)."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, webhooks.save_webhook, warehouse, name, body))


@router.delete("/{name}")
async def delete(name: str, request: Request) -> Response:
    """Remove an endpoint (its deliveries stay, and go dead when next tried)."""
    await require(request, "admin")
    await off_loop(request, webhooks.delete_webhook, request.app.state.services.warehouse, name)
    return JSON({"deleted": name})


@router.post("/{name}/test")
async def post_test(name: str, request: Request) -> Response:
    """Send a ping (no personal data) now and answer what came of it."""
    await require(request, "admin")
    services = request.app.state.services
    warehouse, now = services.warehouse, services.clock()

    def ping() -> dict[str, Any]:
        queued = webhooks.enqueue(warehouse, name, {"type": "ping"}, now=now)
        webhooks.deliver_due(warehouse, now=now, only=[queued["delivery_id"]])
        return webhooks.deliveries(warehouse, webhook=name, limit=1)[0]

    return JSON(await off_loop(request, ping))
