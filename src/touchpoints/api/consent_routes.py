"""Consent over HTTP: record decisions (admin keys), read a person's standing (read keys),
and set a source's collection mode (admin keys)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.privacy.consent_config import set_source_mode
from touchpoints.privacy.consent_read import consent_status
from touchpoints.privacy.consent_records import record

router = APIRouter(tags=["consent"])


class ConsentRequest(BaseModel):
    """`{"subject": "email:ana@example.com", "purposes": {"email_marketing": "granted"}}`;
    statuses are granted, denied, withdrawn (or true / false)."""

    subject: Any = None
    purposes: Any = None
    policy_version: Any = None
    recorded_at: Any = None
    source: Any = "api"
    reason: Any = None


class ModeRequest(BaseModel):
    mode: Any = None


@router.post("/v1/consents")
async def post_consents(payload: ConsentRequest, request: Request) -> Response:
    """Append a person's decisions; answers the records stored (none when a retry of a
    decision stored before) and the person's standing after them."""
    caller = await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    reason = payload.reason if isinstance(payload.reason, str) else None

    def run() -> dict[str, Any]:
        stored = record(
            warehouse,
            payload.subject,
            payload.purposes,
            source=payload.source,
            policy_version=payload.policy_version,
            recorded_at=payload.recorded_at,
            actor=caller.key_id,
            reason=reason,
        )
        return {"recorded": stored, **consent_status(warehouse, payload.subject, sync=False)}

    return JSON(await off_loop(request, run))


@router.get("/v1/consents/{identifier:path}")
async def get_consents(identifier: str, request: Request, at: str | None = Query(None)) -> Response:
    """Current status per purpose and the history, by any identifier (`kind:value`) or a
    customer id; `at` (ISO-8601 with offset) answers as of that time."""
    await require(request, "read")
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)  # consent events acknowledged so far
    return JSON(await off_loop(request, consent_status, services.warehouse, identifier, at))


@router.put("/v1/admin/sources/{source_id}/consent-mode")
async def put_consent_mode(source_id: str, payload: ModeRequest, request: Request) -> Response:
    """Set how a source stores events of people without analytics consent: `off`,
    `pseudonymous` or `drop` (see touchpoints.collect.consent)."""
    caller = await require(request, "admin")
    services = request.app.state.services
    changed = await off_loop(
        request,
        set_source_mode,
        services.warehouse,
        source_id,
        payload.mode,
        actor=caller.key_id,
    )
    services.collector.registry.forget(source_id)
    return JSON(changed)
