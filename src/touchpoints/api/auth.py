"""Reading the API credential of a request (Bearer, or HTTP Basic user name)."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request


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


def require(request: Request, role: str) -> str:
    """The caller's role, at least `role`, or a 401/403 error."""
    return request.app.state.services.keys.require(credential(request), role)
