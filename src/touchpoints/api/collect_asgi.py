"""The Segment HTTP Tracking API as a plain ASGI layer in front of FastAPI.

The collector endpoints are the hot path (hundreds of requests a second, each up to
2,500 events), so they skip FastAPI's routing and middleware, which cost several times
the validation itself; everything else passes through to the FastAPI app. Their
OpenAPI description is added to the app's schema by `document`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI

from touchpoints.api import schemas
from touchpoints.api.errors import error_parts
from touchpoints.collect.collector import Collector
from touchpoints.collect.spec import SHORT_PATHS, Limits
from touchpoints.errors import PayloadTooLarge, TouchpointsError

log = logging.getLogger("touchpoints.collect")

KINDS = ("track", "page", "screen", "identify", "group", "alias", "batch", "import")
PATHS: dict[str, str] = {f"/v1/{kind}": kind for kind in KINDS} | {
    f"/v1/{short}": kind for short, kind in SHORT_PATHS.items()
}
#: Raw bodies larger than this cannot inflate to a batch within the limit... nor be one.
MAX_RAW_BODY = Limits.BATCH_BYTES + 64 * 1024


class CollectorASGI:
    """Answers POST /v1/{track,page,…} itself; passes every other request on."""

    def __init__(self, app: Any, collector: Collector) -> None:
        self.app = app
        self.collector = collector

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None or scope["method"] == "OPTIONS":  # CORS preflight: FastAPI's
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(
                send,
                405,
                {
                    "success": False,
                    "code": "method_not_allowed",
                    "message": f"use POST for /v1/{kind}",
                },
                [(b"allow", b"POST, OPTIONS")],
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        extra: list[tuple[bytes, bytes]] = []
        origin = headers.get("origin")
        if origin:
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
        try:
            body = await _read_body(receive)
            client = scope.get("client")
            outcome = await self.collector.handle(
                kind, body, headers, client[0] if client else None
            )
            status, payload = 200, outcome.body()
        except TouchpointsError as error:
            status, payload, more = error_parts(error)
            extra += [(k.lower().encode(), v.encode()) for k, v in more.items()]
        except Exception:  # a bug of ours: say so in the shape clients can read
            log.exception("the collector failed on a request to %s", scope.get("path"))
            status, payload = (
                500,
                {
                    "success": False,
                    "code": "internal_error",
                    "message": "the collector failed; the event was not stored",
                },
            )
        await _respond(send, status, payload, extra)


async def _respond(
    send: Any, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    data = orjson.dumps(payload)
    start = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": start + headers})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Any) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_RAW_BODY:
            raise PayloadTooLarge(
                f"the body is over the limit of {Limits.BATCH_BYTES} bytes", field="body"
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def document(app: FastAPI) -> None:
    """Add the collector endpoints to the app's OpenAPI schema."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = original()
        for kind in KINDS:
            body = (
                schemas.batch_schema()
                if kind in ("batch", "import")
                else (schemas.message_schema(kind))
            )
            spec["paths"][f"/v1/{kind}"] = {
                "post": {
                    "tags": ["collect"],
                    "summary": f"Segment {kind}",
                    "operationId": f"collect_{kind}",
                    **schemas.request_body(body),
                    "responses": {**schemas.SUCCESS, **schemas.ERRORS},
                }
            }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
