"""The customer 360 over HTTP (read keys)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.identity import profile

router = APIRouter(prefix="/v1", tags=["profiles"])


@router.get("/profiles/{identifier:path}")
async def get_profile(
    identifier: str, request: Request, limit: int = Query(200, ge=1, le=5000)
) -> Response:
    """A customer's profile and cross-channel timeline, by any of their identifiers
    (`email:ana@example.com`, a user id, an anonymous id, a phone, a loyalty card)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, profile, warehouse, identifier, limit))
