"""Audiences over HTTP: saving, refreshing, deleting and exporting need an admin key;
reading them, their history and members (customer ids only) needs a read key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.activate.audiences import (
    current_members,
    delete_audience,
    get_audience,
    list_audiences,
    refresh,
    save_audience,
    size_history,
)
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput

router = APIRouter(prefix="/v1/audiences", tags=["activation"])


@router.get("")
async def get_audiences(request: Request) -> Response:
    """Every audience with its last refresh: size, entered, left."""
    await require(request, "read")
    return JSON(await off_loop(request, list_audiences, request.app.state.services.warehouse))


@router.put("/{name}")
async def put_audience(name: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create or replace an audience (see docs/activation.md); errors name the field."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, save_audience, warehouse, name, body))


@router.get("/{name}")
async def get_one(name: str, request: Request) -> Response:
    """The definition and the size history (with entered and left at each refresh)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse

    def read() -> dict[str, Any]:
        return {**get_audience(warehouse, name), "history": size_history(warehouse, name)}

    return JSON(await off_loop(request, read))


@router.delete("/{name}")
async def delete(name: str, request: Request) -> Response:
    """Remove an audience, its membership and history."""
    await require(request, "admin")
    await off_loop(request, delete_audience, request.app.state.services.warehouse, name)
    return JSON({"deleted": name})


@router.post("/{name}/refresh")
async def post_refresh(name: str, request: Request) -> Response:
    """Recompute the members now; answers the size and how many entered and left."""
    await require(request, "admin")
    services = request.app.state.services
    found = await off_loop(request, refresh, services.warehouse, name, now=services.clock())
    return JSON({k: v for k, v in found.items() if not k.endswith("_ids")})


@router.get("/{name}/members")
async def get_members(name: str, request: Request, limit: int = 1000) -> Response:
    """The members as of the last refresh: customer ids and when they entered."""
    await require(request, "read")
    if not 0 < limit <= 100_000:
        raise InvalidInput("limit is 1 to 100000", field="limit")
    warehouse = request.app.state.services.warehouse

    def read() -> list[dict[str, Any]]:
        get_audience(warehouse, name)  # 404 for an unknown audience
        rows = current_members(warehouse, name).order_by("customer_id").limit(limit)
        return [
            {"customer_id": r["customer_id"], "entered_at": r["entered_at"].isoformat()}
            for r in rows.to_pyarrow().to_pylist()
        ]

    return JSON(await off_loop(request, read))
