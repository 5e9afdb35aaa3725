"""The insights reports over HTTP (read keys): `GET /v1/insights/{report}?...` takes the
same parameters as the CLI verbs (repeat `where` and `step`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.models.reports import REPORTS, run_report

router = APIRouter(prefix="/v1/insights", tags=["insights"])


@router.get("")
async def list_reports(request: Request) -> Response:
    """The reports and the parameters each takes (besides `from`, `to` and `where`)."""
    await require(request, "read")
    return JSON(
        [
            {
                "report": r.name,
                "summary": r.summary,
                "parameters": {
                    name: {"required": o.required, "repeatable": o.many, "help": o.help}
                    for name, o in r.options.items()
                },
            }
            for r in REPORTS.values()
        ]
    )


@router.get("/{report}")
async def get_report(report: str, request: Request) -> Response:
    """One report as `{"columns": [...], "rows": [{...}, ...]}`. Scope: `from`, `to` (a date
    or ISO time, UTC; a bare date `to` includes the day), `where=FIELD=VALUE` (repeatable)."""
    await require(request, "read")
    query = request.query_params
    params = {name: query.getlist(name) for name in query}
    warehouse = request.app.state.services.warehouse
    result = await off_loop(request, run_report, warehouse, report, params)
    return JSON(result.as_dict())
