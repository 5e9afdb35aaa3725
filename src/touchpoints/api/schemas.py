"""OpenAPI descriptions of the Segment messages the collector takes.

The collector reads bodies itself (for speed, gzip limits and Segment-style errors), so
these schemas document the wire format rather than drive validation.
"""

from __future__ import annotations

from typing import Any

_ID = {"type": ["string", "integer"], "description": "A user id or anonymous id"}
_OBJECT = {"type": "object", "additionalProperties": True}
_TIME = {"type": "string", "format": "date-time"}

COMMON: dict[str, Any] = {
    "messageId": {"type": "string", "maxLength": 99},
    "userId": _ID,
    "anonymousId": _ID,
    "timestamp": _TIME,
    "sentAt": _TIME,
    "context": _OBJECT,
    "integrations": _OBJECT,
    "writeKey": {"type": "string"},
}

EXTRA: dict[str, dict[str, Any]] = {
    "track": {"event": {"type": "string", "minLength": 1}, "properties": _OBJECT},
    "page": {"name": {"type": "string"}, "properties": _OBJECT},
    "screen": {"name": {"type": "string"}, "properties": _OBJECT},
    "identify": {"traits": _OBJECT},
    "group": {"groupId": _ID, "traits": _OBJECT},
    "alias": {"previousId": _ID},
}

REQUIRED: dict[str, list[str]] = {
    "track": ["event"],
    "group": ["groupId"],
    "alias": ["previousId", "userId"],
}


def message_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {**COMMON, **EXTRA[kind], "type": {"const": kind}},
        "additionalProperties": True,
    }
    if kind in REQUIRED:
        schema["required"] = REQUIRED[kind]
    return schema


def batch_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2500,
                "items": {"oneOf": [message_schema(kind) for kind in EXTRA]},
            },
            "sentAt": _TIME,
            "context": _OBJECT,
            "integrations": _OBJECT,
            "writeKey": {"type": "string"},
        },
    }


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": schema}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": content, "text/plain": content},
        }
    }


SUCCESS = {
    "200": {
        "description": "Stored durably",
        "content": {"application/json": {"example": {"success": True}}},
    }
}


_ERROR = {
    "content": {
        "application/json": {
            "example": {
                "success": False,
                "code": "invalid_request",
                "message": "userId or anonymousId is required",
                "field": "batch[3].userId",
            }
        }
    }
}
ERRORS = {
    "400": {"description": "Malformed JSON or a missing or invalid field", **_ERROR},
    "401": {"description": "Missing or unknown write key", **_ERROR},
    "413": {"description": "Over 32 KB an event, 500 KB or 2,500 events a batch", **_ERROR},
    "429": {"description": "Too fast for this key; see Retry-After", **_ERROR},
}
