"""Every error the API answers with, mapped to its HTTP status in one place.

Bodies always carry `code` and `message` (the Segment clients read both; a malformed
error body makes them retry and send duplicates), and `field` where one is to blame.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from touchpoints.activate.mailer import MailError
from touchpoints.api.responses import JSON as ORJSONResponse
from touchpoints.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MissingDependency,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TouchpointsError,
    Unauthorized,
    WarehouseError,
)

STATUS: dict[type[TouchpointsError], int] = {
    PayloadTooLarge: 413,
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    WarehouseError: 503,
    MissingDependency: 501,
    MailError: 502,
}


def status_of(error: TouchpointsError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def error_parts(error: TouchpointsError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of the response to `error`."""
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="touchpoints"'
    return status_of(error), {"success": False, **error.to_dict()}, headers


def error_response(error: TouchpointsError) -> ORJSONResponse:
    status, body, headers = error_parts(error)
    return ORJSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into our error body."""

    @app.exception_handler(TouchpointsError)
    async def _ours(_: Request, exc: TouchpointsError) -> ORJSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error_response(InvalidInput(str(first.get("msg")), field=where))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> ORJSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return ORJSONResponse(
            {"success": False, "code": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
