"""Saved segments over HTTP: saving, refreshing (which records the size) and deleting
need an admin key; reading members goes through `/v1/insights/segment` with a read key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.insights.segments import delete_segment, evaluate_segment, save_segment

router = APIRouter(prefix="/v1/segments", tags=["segments"])


class SegmentRequest(BaseModel):
    name: str
    rule: dict[str, Any] | str


def refresh(warehouse: Any, name: str) -> dict[str, Any]:
    found = evaluate_segment(warehouse, name)
    return {"name": found.name, "computed_at": found.as_of.isoformat(), "size": found.size}


@router.post("")
async def post_segment(request: Request, payload: SegmentRequest) -> Response:
    """Create or replace a saved segment (the rule is checked first; errors name the path
    of the bad node)."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, save_segment, warehouse, payload.name, payload.rule))


@router.post("/{name}/refresh")
async def post_refresh(name: str, request: Request) -> Response:
    """Count the segment's members now and add the size to its history."""
    await require(request, "admin")
    return JSON(await off_loop(request, refresh, request.app.state.services.warehouse, name))


@router.delete("/{name}")
async def delete(name: str, request: Request) -> Response:
    """Remove a saved segment (refused while another segment refers to it)."""
    await require(request, "admin")
    await off_loop(request, delete_segment, request.app.state.services.warehouse, name)
    return JSON({"deleted": name})
