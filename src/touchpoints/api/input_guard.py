"""Refuse NUL characters in a request's parameters and JSON body, naming where.

No identifier, filter or name the API takes can hold one, and the SQL engines cannot
read one inside a literal, so the request is answered 400 before any handler sees it.
(The collector's paths do not pass through here: event payloads are stored as given.)
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from touchpoints.errors import InvalidInput

NUL = "\x00"


async def refuse_nul(request: Request) -> None:
    """A FastAPI dependency for the whole app: 400 with the field holding a NUL."""
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise _refusal(name.replace(NUL, ""))
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise _refusal(name)
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()
    if b"\x00" not in body and b"\\u0000" not in body:
        return
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # the route's own parser reports malformed JSON
    where = _nul_path(parsed, "")
    if where is not None:
        raise _refusal(where or "body")


def _nul_path(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) holding a NUL, if any."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if NUL in key:
                return inner.replace(NUL, "")
            found = _nul_path(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _refusal(field: str) -> InvalidInput:
    return InvalidInput(f"{field} holds a NUL character (\\u0000), which it may not", field=field)
