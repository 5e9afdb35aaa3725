"""Rights of the person over HTTP (admin keys): access export, erasure, retention."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.privacy.access import export_person
from touchpoints.privacy.erasure import erase
from touchpoints.privacy.person import Person
from touchpoints.privacy.retention import enforce_retention, load_settings, save_settings
from touchpoints.warehouse import Warehouse

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])


class EraseRequest(BaseModel):
    """`{"identifier": "email:ana@example.com", "reason": "Art. 17 request 2026-14"}`."""

    identifier: Any = None
    reason: Any = None


class RetentionSettings(BaseModel):
    """`{"settings": {"events": "730d", "events:Page Viewed": "90d"}}`."""

    settings: Any = None


class EnforceRequest(BaseModel):
    dry_run: bool = False


def segment_memberships(warehouse: Warehouse, person: Person) -> list[dict[str, Any]]:
    """The saved segments the person belongs to now (an access export's `segments`)."""
    from touchpoints.insights.segments import membership, saved_segments

    saved = saved_segments(warehouse)
    if not saved:
        return []
    flags = membership(warehouse, saved, segments=saved)
    rows = flags.filter(flags.customer_id == person.customer_id).to_pyarrow().to_pylist()
    member = rows[0] if rows else {}
    return [
        {"segment": name, "member": bool(member.get(name)), "definition": saved[name]}
        for name in sorted(saved)
    ]


EXTRAS = {"segments": segment_memberships}


def _actor(caller: Any) -> str:
    return getattr(caller, "key_id", None) or "api"


@router.get("/export/{identifier:path}")
async def get_export(
    identifier: str, request: Request, reason: str | None = Query(None, max_length=500)
) -> Response:
    """Everything held about a person, by any identifier, as a zip (JSON and one CSV
    per table)."""
    caller = await require(request, "admin")
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)
    archive, _ = await off_loop(
        request,
        export_person,
        services.warehouse,
        identifier,
        actor=_actor(caller),
        reason=reason,
        extras=EXTRAS,
    )
    name = "touchpoints-export-" + hashlib.sha256(archive).hexdigest()[:12] + ".zip"
    return Response(
        archive,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/erase")
async def post_erase(payload: EraseRequest, request: Request) -> Response:
    """Erase a person from every table, spool file and export, leaving tombstones."""
    caller = await require(request, "admin")
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)
    result = await off_loop(
        request,
        erase,
        services.warehouse,
        payload.identifier,
        reason=payload.reason,
        actor=_actor(caller),
        writer=services.writer,
    )
    return JSON(result)


@router.get("/retention")
async def get_retention(request: Request) -> Response:
    """The retention period per table and per event."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON({"settings": await off_loop(request, load_settings, warehouse)})


@router.put("/retention")
async def put_retention(payload: RetentionSettings, request: Request) -> Response:
    """Replace the retention settings."""
    caller = await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    saved = await off_loop(
        request, save_settings, warehouse, payload.settings, actor=_actor(caller)
    )
    return JSON({"settings": saved})


@router.post("/retention/enforce")
async def post_enforce(payload: EnforceRequest, request: Request) -> Response:
    """Delete (or count, with dry_run) what is past its retention period."""
    caller = await require(request, "admin")
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)
    result = await off_loop(
        request,
        enforce_retention,
        services.warehouse,
        dry_run=payload.dry_run,
        actor=_actor(caller),
    )
    return JSON(result)
