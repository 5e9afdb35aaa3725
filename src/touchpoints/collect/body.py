"""Read a request body the way the Segment clients send it, within the size limits.

gzip is inflated incrementally and stopped as soon as the output passes the limit, so a
small compressed body can never expand into gigabytes in memory.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from touchpoints.errors import InvalidInput, PayloadTooLarge

_JSON_TYPES = ("application/json", "text/plain", "")


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The decoded body, or PayloadTooLarge once it would exceed `limit` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        data = body
    elif encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
            if not inflater.eof and len(data) <= limit and not inflater.unconsumed_tail:
                raise InvalidInput("the gzip body is truncated", field="body")
        except zlib.error as exc:
            raise InvalidInput(f"the body is not valid {encoding}: {exc}", field="body") from None
    else:
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported (use gzip)", field="Content-Encoding"
        )
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", field="body")
    return data


def parse_json(data: bytes, content_type: str | None) -> Any:
    """The JSON document of a body sent as application/json or text/plain."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES:
        raise InvalidInput(
            f"Content-Type {media!r} is not supported; send application/json", field="Content-Type"
        )
    if not data.strip():
        raise InvalidInput("the body is empty; send a JSON object", field="body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", field="body") from None
