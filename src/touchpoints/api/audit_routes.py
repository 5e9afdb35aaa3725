"""The audit log over HTTP (admin keys): read-only, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, reason_of, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput
from touchpoints.privacy.audit import COLUMNS, export_audit, record

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/audit")
async def get_audit(
    request: Request,
    start: str | None = Query(None, alias="from", description="ISO-8601 date or date-time"),
    end: str | None = Query(None, alias="to", description="exclusive; a date includes the day"),
    action: str | None = Query(None, description="e.g. profile.read, or a prefix: privacy."),
    subject: str | None = Query(None, description="an identifier or customer id"),
    fmt: str = Query("json", alias="format", description="json or csv"),
    reason: str | None = Query(None, description="why you read the log (audited)"),
) -> Response:
    """Who did what to whose data, when and why, oldest first. Reading the log is itself
    recorded (`audit.export`)."""
    caller = await require(request, "admin")
    if fmt not in ("json", "csv"):
        raise InvalidInput(f"format is json or csv, not {fmt[:20]!r}", field="format")
    stated = reason_of(request)
    warehouse = request.app.state.services.warehouse

    def run() -> list[dict[str, Any]]:
        rows = export_audit(warehouse, start, end, action, subject)
        filters = {"from": start, "to": end, "action": action, "subject": subject}
        record(
            warehouse,
            caller.key_id,
            "audit.export",
            subject=subject,
            reason=stated,
            details={**{k: v for k, v in filters.items() if v}, "entries": len(rows)},
        )
        return rows

    rows = await off_loop(request, run)
    if fmt == "json":
        return JSON({"count": len(rows), "entries": rows})
    return Response(
        _csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit_log.csv"'},
    )


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        details = row["details"]
        if details is not None and not isinstance(details, str):
            details = orjson.dumps(details).decode()
        writer.writerow({**row, "details": details})
    return out.getvalue()
