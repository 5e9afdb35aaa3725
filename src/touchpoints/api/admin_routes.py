"""Operations for admin keys (and the CLI, through the running server's control token)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from touchpoints.api.auth import off_loop, reason_of, require
from touchpoints.api.responses import JSON
from touchpoints.collect.ip import DEFAULT_IP_MODE
from touchpoints.collect.sources import add_source, list_sources
from touchpoints.privacy.keys import add_key, list_keys, revoke_key
from touchpoints.privacy.rebuild import rebuild
from touchpoints.privacy.source_privacy import set_source_ip_mode

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class SqlRequest(BaseModel):
    sql: str


class SourceRequest(BaseModel):
    name: str
    channel: str = "web"
    ip_mode: str = DEFAULT_IP_MODE


class KeyRequest(BaseModel):
    name: str
    role: str = "read"


@router.post("/sql")
async def run_sql(payload: SqlRequest, request: Request) -> Response:
    """Run one read-only query; rows come back as a list of objects."""
    await require(request, "admin")
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)  # read what was acknowledged
    table = await off_loop(request, services.warehouse.query, payload.sql)
    return JSON({"columns": table.column_names, "rows": table.to_pylist()})


@router.get("/sources")
async def get_sources(request: Request) -> Response:
    await require(request, "admin")
    sources = await off_loop(request, list_sources, request.app.state.services.warehouse)
    return JSON([s.as_dict() for s in sources])


@router.post("/sources")
async def post_source(payload: SourceRequest, request: Request) -> Response:
    await require(request, "admin")
    services = request.app.state.services
    made = await off_loop(
        request, add_source, services.warehouse, payload.name, payload.channel, payload.ip_mode
    )
    services.collector.registry.remember(made)
    return JSON({**made.source.as_dict(), "write_key": made.write_key})


class BuildRequest(BaseModel):
    full: bool = False
    settings: dict[str, Any] = {}


@router.post("/build")
async def post_build(request: Request, payload: BuildRequest | None = None) -> Response:
    """Resolve identities, rebuild profiles and sync consents from everything acknowledged
    so far."""
    await require(request, "admin")
    services = request.app.state.services
    payload = payload or BuildRequest()
    await asyncio.to_thread(services.writer.flush)
    made = await off_loop(
        request, rebuild, services.warehouse, full=payload.full, settings=payload.settings
    )
    return JSON(made)


@router.get("/keys")
async def get_keys(request: Request) -> Response:
    await require(request, "admin")
    keys = await off_loop(request, list_keys, request.app.state.services.warehouse)
    return JSON([k.as_dict() for k in keys])


@router.post("/keys")
async def post_key(payload: KeyRequest, request: Request) -> Response:
    caller = await require(request, "admin")
    key, secret = await off_loop(
        request,
        add_key,
        request.app.state.services.warehouse,
        payload.name,
        payload.role,
        actor=caller.key_id,  # audited as key.add
        reason=reason_of(request),
    )
    return JSON({**key.as_dict(), "key": secret})


@router.post("/keys/{key_id}/revoke")
async def post_revoke(key_id: str, request: Request) -> Response:
    caller = await require(request, "admin")
    revoked = await off_loop(
        request,
        revoke_key,
        request.app.state.services.warehouse,
        key_id,
        actor=caller.key_id,  # audited as key.revoke
        reason=reason_of(request),
    )
    return JSON(revoked.as_dict())


class IpModeRequest(BaseModel):
    mode: str


@router.put("/sources/{source_id}/ip-mode")
async def put_ip_mode(source_id: str, payload: IpModeRequest, request: Request) -> Response:
    """Set what a source keeps of client IP addresses: keep, truncate, hash or drop
    (events already stored are not changed)."""
    caller = await require(request, "admin")
    services = request.app.state.services
    changed = await off_loop(
        request, set_source_ip_mode, services.warehouse, source_id, payload.mode,
        actor=caller.key_id,
    )  # fmt: skip
    services.collector.registry.forget(source_id)
    return JSON(changed)
