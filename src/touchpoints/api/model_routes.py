"""Model answers over HTTP (read keys): recommendations by any identifier."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.models.recommend_service import recommend_for

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/recommendations/{identifier:path}")
async def get_recommendations(
    identifier: str,
    request: Request,
    k: int = Query(10, ge=1, le=1000),
    model: str = Query("als", pattern="^(als|cooccurrence|popularity)$"),
) -> Response:
    """The k products this customer is likeliest to want (bought ones left out), from what
    they did on every channel; someone unknown gets the most popular (`known: false`)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, recommend_for, warehouse, identifier, k, model))
