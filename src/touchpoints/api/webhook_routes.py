"""Webhooks over HTTP: saving, removing, testing and replaying need an admin key; viewing
the webhooks, their deliveries and dead letters needs a read key. Personal payloads are
never shown, only their size (see docs/activation.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from touchpoints.activate.webhooks import (
    dead_letters,
    delete_webhook,
    deliver_due,
    deliveries,
    enqueue,
    get_delivery,
    list_webhooks,
    replay,
    save_webhook,
)
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.get("")
async def get_webhooks(request: Request) -> Response:
    """Every webhook and its definition (URL, purpose, attempts, backoff, timeout); never
    the signing secret."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, list_webhooks, warehouse))


@router.get("/deliveries")
async def get_deliveries(
    request: Request,
    webhook: str | None = Query(None, description="Only this webhook's deliveries."),
    status: str | None = Query(None, description="pending, delivered, dead or denied."),
    limit: int = Query(100, description="At most this many, newest first (1 to 1000)."),
) -> Response:
    """The latest deliveries: status, attempts, next attempt, last error; the payload only
    when it carries no one's personal data (else its size)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, deliveries, warehouse, webhook, status, limit))


@router.get("/dead-letters")
async def get_dead_letters(
    request: Request,
    limit: int = Query(100, description="At most this many, latest failure first."),
) -> Response:
    """Deliveries that failed their last attempt, and when each was replayed (if it was)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, dead_letters, warehouse, limit))


@router.post("/dead-letters/replay")
async def post_replay(request: Request, body: dict[str, Any] | None = Body(None)) -> Response:
    """Queue dead letters again: `{"delivery_ids": [...]}`, or `{}` for every one not yet
    replayed. Answers the ids queued and those skipped (their webhook is gone)."""
    caller = await require(request, "admin")
    unknown = sorted(set(body or {}) - {"delivery_ids"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; give delivery_ids", field=unknown[0])
    ids = (body or {}).get("delivery_ids")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, replay, warehouse, ids, actor=caller.key_id))


@router.put("/{name}")
async def put_webhook(
    name: str,
    request: Request,
    definition: dict[str, Any] = Body(...),
    rotate_secret: bool = Query(False, description="Make a new signing secret."),
) -> Response:
    """Create or replace a webhook: `url` (required), `purpose`, `max_attempts`,
    `backoff_seconds`, `max_backoff_seconds`, `timeout_seconds`. The signing `secret` is
    in the answer only when made (creation, or `rotate_secret=true`): keep it then.
    Errors name the bad field and change nothing."""
    caller = await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    saved = await off_loop(
        request,
        save_webhook,
        warehouse,
        name,
        definition,
        rotate_secret=rotate_secret,
        actor=caller.key_id,
    )
    return JSON(saved, status_code=201 if saved["created"] else 200)


@router.delete("/{name}")
async def remove_webhook(name: str, request: Request) -> Response:
    """Remove a webhook; its pending deliveries become dead letters."""
    caller = await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, delete_webhook, warehouse, name, actor=caller.key_id))


@router.post("/{name}/test")
async def test_webhook(name: str, request: Request) -> Response:
    """Send a ping (no personal data) now and answer what came of its first attempt; a
    failed ping is retried like any delivery."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    ping = {"type": "ping", "webhook": name, "sent_at": datetime.now(UTC).isoformat()}
    queued = await off_loop(request, enqueue, warehouse, name, ping)
    # posted without holding the warehouse lock (deliver_due takes it around its steps)
    await asyncio.to_thread(deliver_due, warehouse, delivery_ids=[queued["delivery_id"]])
    return JSON(await off_loop(request, get_delivery, warehouse, queued["delivery_id"]))
