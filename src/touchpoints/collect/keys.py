"""Secret keys: made random, shown once, stored only as a hash."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

WRITE_KEY_PREFIX = "tpw_"


def new_key(prefix: str) -> str:
    """A fresh random key; 24 random bytes make guessing hopeless."""
    return prefix + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are random, so a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_request(headers: Mapping[str, str], body: Any) -> str | None:
    """The write key in any form a Segment client sends it.

    HTTP Basic with the key as user name (analytics-node, mobile SDKs), `writeKey` in
    the JSON body (segment-analytics-python 2.3+, analytics.js), or a Bearer token.
    """
    if isinstance(body, dict):
        in_body = body.get("writeKey")
        if isinstance(in_body, str) and in_body:
            return in_body
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = decoded.split(":", 1)[0]
        return user or None
    if scheme == "bearer" and value.strip():
        return value.strip()
    return None
