"""Operations the CLI asks of a running server that owns the warehouse file."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from touchpoints.api.responses import JSON
from touchpoints.collect.sources import add_source, list_sources
from touchpoints.errors import Forbidden, Unauthorized

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _authorize(request: Request) -> None:
    token = request.app.state.services.control_token
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("an admin token is required as a Bearer token", field="Authorization")
    if token is None or not hmac.compare_digest(given.strip(), token):
        raise Forbidden("this token may not use admin operations", field="Authorization")


class SqlRequest(BaseModel):
    sql: str


class SourceRequest(BaseModel):
    name: str
    channel: str = "web"


@router.post("/sql")
async def run_sql(payload: SqlRequest, request: Request) -> Response:
    """Run one read-only query; rows come back as a list of objects."""
    _authorize(request)
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)  # read what was acknowledged
    table = await asyncio.to_thread(services.warehouse.query, payload.sql)
    return JSON({"columns": table.column_names, "rows": table.to_pylist()})


@router.get("/sources")
async def get_sources(request: Request) -> Response:
    _authorize(request)
    sources = list_sources(request.app.state.services.warehouse)
    return JSON([s.as_dict() for s in sources])


@router.post("/sources")
async def post_source(payload: SourceRequest, request: Request) -> Response:
    _authorize(request)
    services = request.app.state.services
    made = add_source(services.warehouse, payload.name, payload.channel)
    services.collector.registry.remember(made)
    return JSON({**made.source.as_dict(), "write_key": made.write_key})
