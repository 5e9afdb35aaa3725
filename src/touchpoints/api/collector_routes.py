"""The collector's GET routes: settings for analytics.js and health. (The POST
endpoints are served by `touchpoints.api.collect_asgi`.)"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from touchpoints.api.responses import JSON
from touchpoints.collect.collector import Collector
from touchpoints.errors import NotFound

router = APIRouter()


def _collector(request: Request) -> Collector:
    return request.app.state.services.collector


@router.get("/v1/projects/{write_key}/settings", tags=["collect"])
async def project_settings(write_key: str, request: Request) -> Response:
    """The settings analytics.js loads at start: send everything to this collector."""
    registry = _collector(request).registry
    source = registry.cached(write_key) or await asyncio.to_thread(registry.lookup, write_key)
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
