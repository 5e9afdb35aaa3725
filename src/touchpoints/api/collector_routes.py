"""The Segment HTTP Tracking API: thin routes over `touchpoints.collect.Collector`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from touchpoints.api import schemas
from touchpoints.api.responses import JSON
from touchpoints.collect.collector import Collector
from touchpoints.collect.spec import SHORT_PATHS
from touchpoints.errors import NotFound

router = APIRouter()


def _collector(request: Request) -> Collector:
    return request.app.state.services.collector


def _route(kind: str, path: str, *, documented: bool) -> None:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        client = request.client.host if request.client else None
        outcome = await _collector(request).handle(kind, body, request.headers, client)
        return JSON(outcome.body())

    endpoint.__name__ = f"{kind}_{path.strip('/').replace('/', '_')}"
    schema = schemas.batch_schema() if kind in ("batch", "import") else schemas.message_schema(kind)
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        summary=f"Segment {kind}" if documented else f"Segment {kind} (analytics.js path)",
        tags=["collect"],
        include_in_schema=documented,
        openapi_extra=schemas.request_body(schema),
        responses=schemas.SUCCESS,
    )


for _kind in ("track", "page", "screen", "identify", "group", "alias", "batch", "import"):
    _route(_kind, f"/v1/{_kind}", documented=True)
for _short, _kind in SHORT_PATHS.items():
    _route(_kind, f"/v1/{_short}", documented=False)


@router.get("/v1/projects/{write_key}/settings", tags=["collect"])
async def project_settings(write_key: str, request: Request) -> Response:
    """The settings analytics.js loads at start: send everything to this collector."""
    source = _collector(request).registry.lookup(write_key)
    if source is None:
        raise NotFound("no source has this write key", field="writeKey")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return JSON(
        {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": f"{host}/v1",
                    "protocol": request.url.scheme,
                    "unbundledIntegrations": [],
                    "addBundledMetadata": False,
                }
            },
            "plan": {
                "track": {"__default": {"enabled": True, "integrations": {}}},
                "identify": {"__default": {"enabled": True}},
                "group": {"__default": {"enabled": True}},
            },
            "edgeFunction": {},
            "analyticsNextEnabled": True,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0},
            "legacyVideoPluginsEnabled": False,
            "remotePlugins": [],
        }
    )


@router.get("/health", tags=["health"])
async def health(request: Request) -> Response:
    services = request.app.state.services
    return JSON({"status": "ok", "engine": services.warehouse.engine})
