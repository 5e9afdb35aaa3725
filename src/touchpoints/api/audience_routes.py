"""Audiences over HTTP: saving, deleting, refreshing and exporting need an admin key;
listing, reading one (definition and size history) and its member ids need a read key.

An export answers with the file as a download and its counts in the headers
`X-Touchpoints-Written` and `X-Touchpoints-Left-Out` (JSON: reason to count); with
`inline=true` it answers JSON instead, the file in `content_base64` (what the CLI uses).
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from touchpoints.activate.audience_exports import export_audience
from touchpoints.activate.audiences import (
    delete_audience,
    get_audience,
    history_rows,
    list_audiences,
    members_page,
    refresh,
    save_audience,
)
from touchpoints.api.auth import off_loop, reason_of, require
from touchpoints.api.responses import JSON
from touchpoints.warehouse import Warehouse

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "google": "text/csv; charset=utf-8",
    "meta": "text/csv; charset=utf-8",
}
SUFFIX = {"csv": "csv", "parquet": "parquet", "google": "google.csv", "meta": "meta.csv"}


@router.get("")
async def get_audiences(request: Request) -> Response:
    """Every audience: kind, schedule, description, current size, last refresh."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, list_audiences, warehouse))


@router.get("/{name}")
async def get_one(name: str, request: Request) -> Response:
    """One audience: its definition, current size and every refresh (size, entered,
    left)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse

    def read() -> dict[str, Any]:
        return {**get_audience(warehouse, name), "sizes": history_rows(warehouse, name)}

    return JSON(await off_loop(request, read))


@router.put("/{name}")
async def put_audience(
    name: str, request: Request, definition: dict[str, Any] = Body(...)
) -> Response:
    """Create or replace an audience (see docs/activation.md for definitions); errors name
    the bad field. An uploaded list is stored only in pseudonymous form; the answer says
    how many of its identifiers match a customer now."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, save_audience, warehouse, name, definition))


@router.delete("/{name}")
async def delete(name: str, request: Request) -> Response:
    """Remove an audience with its members and history (refused while in use)."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, delete_audience, warehouse, name))


@router.post("/{name}/refresh")
async def post_refresh(name: str, request: Request) -> Response:
    """Find the members now: size, how many entered and left since the last refresh."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    found = await off_loop(request, refresh, warehouse, name)
    return JSON({k: v for k, v in found.items() if k not in ("entered_ids", "left_ids")})


@router.get("/{name}/members")
async def get_members(
    name: str, request: Request, limit: int = Query(1000, ge=1, le=1_000_000)
) -> Response:
    """The member customer ids as of the last refresh, sorted, at most `limit`."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, members_page, warehouse, name, limit))


@router.get("/{name}/export")
async def get_export(
    name: str,
    request: Request,
    format: str = Query("csv", max_length=20),
    purpose: str | None = Query(None, max_length=100),
    inline: bool = False,
) -> Response:
    """The current members as a file: `csv` or `parquet` (customer_id, entered_at; a
    `purpose` is required), or `google` / `meta` hashed customer-list files (purpose
    `advertising` by default). Members without consent for the purpose, erased, or
    (for ad files) without an email or phone are left out and counted."""
    caller = await require(request, "admin")
    stated = reason_of(request)
    services = request.app.state.services
    await asyncio.to_thread(services.writer.flush)  # consents collected just now count
    summary, content = await off_loop(
        request, _export, services.warehouse, name, format, purpose, caller.key_id, stated
    )
    if inline:
        return JSON({**summary, "content_base64": base64.b64encode(content).decode()})
    filename = f"{_safe(name)}.{SUFFIX[format]}"
    return Response(
        content,
        media_type=MEDIA[format],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Touchpoints-Written": str(summary["written"]),
            "X-Touchpoints-Left-Out": json.dumps(summary["left_out"], sort_keys=True),
            "X-Touchpoints-Purpose": summary["purpose"],
        },
    )


def _export(
    warehouse: Warehouse,
    name: str,
    format: str,
    purpose: str | None,
    actor: str,
    reason: str | None,
) -> tuple[dict[str, Any], bytes]:
    with tempfile.TemporaryDirectory(prefix="touchpoints-audience-") as folder:
        path = Path(folder) / "export"
        summary = export_audience(
            warehouse, name, path, format=format, purpose=purpose, actor=actor, reason=reason
        )
        content = path.read_bytes()
    return {k: v for k, v in summary.items() if k != "path"}, content


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
