"""Reading the API credential of a request (Bearer, or HTTP Basic user name)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from touchpoints.privacy.audit import check_reason
from touchpoints.privacy.keys import Caller

T = TypeVar("T")
#: Where a caller states why (for the audit log): this header or a `reason` query parameter.
REASON_HEADER = "X-Touchpoints-Reason"


def credential(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            return base64.b64decode(value, validate=True).decode().split(":", 1)[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


async def require(request: Request, role: str) -> Caller:
    """The caller (key id and role), whose role is at least `role`; else 401/403, or 429
    when the key is over its rate limit (`touchpoints.api.ratelimit`). Also kept as
    `request.state.caller` for the audit log."""
    services = request.app.state.services
    caller = await off_loop(request, services.keys.identify, credential(request))
    services.limiter.take(caller)
    caller.check(role)
    request.state.caller = caller
    return caller


def reason_of(request: Request) -> str | None:
    """Why the caller says it makes this request: the `reason` query parameter, else the
    X-Touchpoints-Reason header (400 if it is not short plain text)."""
    return check_reason(
        request.query_params.get("reason") or request.headers.get(REASON_HEADER) or None
    )


async def off_loop(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` in a worker thread holding the warehouse lock: the Ibis connection is
    one per process and must not be used by two threads at once, and the event loop
    (which serves the collector) must never wait on it."""
    warehouse = request.app.state.services.warehouse

    def locked() -> T:
        with warehouse.lock:
            return fn(*args, **kwargs)

    return await asyncio.to_thread(locked)
