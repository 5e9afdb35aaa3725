"""GET /tp.js: the first-party JavaScript tracker, public like the collector it feeds."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from touchpoints.collect.tracker import script

router = APIRouter()

_JS = "application/javascript; charset=utf-8"


@router.get(
    "/tp.js",
    tags=["collect"],
    summary="The JavaScript tracker",
    response_class=Response,
    responses={
        200: {"content": {"application/javascript": {}}, "description": "tracker.js"},
        304: {"description": "the copy named by If-None-Match is current"},
    },
)
async def tracker_script(request: Request) -> Response:
    """touchpoints.js, the script of the snippet in docs/tracker.md: cached for an hour,
    then revalidated by its ETag."""
    tracker = script()
    headers = {"ETag": tracker.etag, "Cache-Control": "public, max-age=3600"}
    if tracker.matches(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(tracker.body, media_type=_JS, headers=headers)
