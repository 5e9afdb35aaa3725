"""The customer 360 over HTTP (read keys), with the customer's voice (survey answers,
mentions, sentiment: `touchpoints.models.customer_voice`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, reason_of, require
from touchpoints.api.responses import JSON
from touchpoints.models.customer_voice import profile_with_voice

router = APIRouter(prefix="/v1", tags=["profiles"])


@router.get("/profiles/{identifier:path}")
async def get_profile(
    identifier: str,
    request: Request,
    limit: int = Query(200, ge=1, le=5000),
    reason: str | None = Query(None, description="why (audited; or X-Touchpoints-Reason)"),
) -> Response:
    """A customer's profile and cross-channel timeline, by any of their identifiers
    (`email:ana@example.com`, a user id, an anonymous id, a phone, a loyalty card).
    Every read is recorded in the audit log (`profile.read`) with the key and reason.
    `voice` sums up their survey answers and mentions (latest NPS/CSAT/CES, counts,
    mean sentiment)."""
    caller = await require(request, "read")
    warehouse = request.app.state.services.warehouse
    found = await off_loop(
        request,
        profile_with_voice,
        warehouse,
        identifier,
        limit,
        actor=caller.key_id,
        reason=reason_of(request),
    )
    return JSON(found)
