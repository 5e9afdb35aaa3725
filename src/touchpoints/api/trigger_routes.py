"""Triggers over HTTP: saving, removing and evaluating need an admin key; reading them,
what is waiting and what fired needs a read key."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import ibis
from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.activate.trigger_engine import tick
from touchpoints.activate.triggers import delete_trigger, list_triggers, save_trigger
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput

router = APIRouter(prefix="/v1/triggers", tags=["activation"])


@router.get("")
async def get_triggers(request: Request) -> Response:
    """Every trigger's definition."""
    await require(request, "read")
    return JSON(await off_loop(request, list_triggers, request.app.state.services.warehouse))


@router.put("/{name}")
async def put_trigger(name: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create or replace a trigger (see docs/activation.md); errors name the field."""
    await require(request, "admin")
    if body.get("name", name) != name:
        raise InvalidInput("the name in the body differs from the path", field="name")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, save_trigger, warehouse, {**body, "name": name}))


@router.delete("/{name}")
async def delete(name: str, request: Request) -> Response:
    """Remove a trigger and what it was waiting for."""
    await require(request, "admin")
    await off_loop(request, delete_trigger, request.app.state.services.warehouse, name)
    return JSON({"deleted": name})


def _rows(table: ibis.Table, limit: int) -> list[dict[str, Any]]:
    if not 0 < limit <= 10_000:
        raise InvalidInput("limit is 1 to 10000", field="limit")
    rows = table.limit(limit).to_pyarrow().to_pylist()
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
    ]


@router.get("/{name}/fires")
async def get_fires(name: str, request: Request, limit: int = 100) -> Response:
    """When the trigger fired, for whom (customer ids), and what came of it."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse

    def read() -> list[dict[str, Any]]:
        fires = warehouse.table("trigger_fires")
        mine = fires.filter(fires.trigger == name).order_by(ibis.desc("fired_at"))
        return _rows(mine, limit)

    return JSON(await off_loop(request, read))


@router.get("/{name}/pending")
async def get_pending(name: str, request: Request, limit: int = 100) -> Response:
    """Who the trigger is waiting on (A seen, B not yet) and until when."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse

    def read() -> list[dict[str, Any]]:
        pending = warehouse.table("trigger_pending")
        mine = pending.filter(pending.trigger == name).order_by("due_at")
        return _rows(mine.drop("user_id", "anonymous_id"), limit)

    return JSON(await off_loop(request, read))


@router.post("/tick")
async def post_tick(request: Request) -> Response:
    """Evaluate the triggers now (the server does so every second on its own)."""
    await require(request, "admin")
    services = request.app.state.services
    services.writer.flush()
    result = await asyncio.to_thread(
        tick, services.warehouse, writer=services.writer, now=services.clock(), lag_seconds=0
    )
    return JSON(result)
