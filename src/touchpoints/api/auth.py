"""Reading the API credential of a request (Bearer, or HTTP Basic user name)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


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


async def require(request: Request, role: str) -> str:
    """The caller's role, at least `role`, or a 401/403 error."""
    return await off_loop(
        request, request.app.state.services.keys.require, credential(request), role
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
