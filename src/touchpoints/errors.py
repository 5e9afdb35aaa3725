"""The exception tree of Touchpoints: one root, a few kinds a caller can act on.

The API maps each kind to an HTTP status in one place (`touchpoints.api.errors`);
the CLI prints the message as one line.
"""

from __future__ import annotations

from typing import Any


class TouchpointsError(Exception):
    """Root of every error Touchpoints raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class InvalidInput(TouchpointsError):
    """The caller sent something malformed; the message names the field and the reason."""

    code = "invalid_request"


class PayloadTooLarge(InvalidInput):
    """A body, batch or event is over its documented size limit."""

    code = "payload_too_large"


class Unauthorized(TouchpointsError):
    """No key, or a key Touchpoints does not know."""

    code = "unauthorized"


class Forbidden(TouchpointsError):
    """A known key whose role does not allow this operation."""

    code = "forbidden"


class NotFound(TouchpointsError):
    """The thing asked for does not exist."""

    code = "not_found"


class Conflict(TouchpointsError):
    """The request clashes with what exists (a duplicate name, say)."""

    code = "conflict"


class RateLimited(TouchpointsError):
    """A key sent faster than its limit; retry after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class WarehouseError(TouchpointsError):
    """The warehouse cannot be opened or written (locked, missing backend, disk)."""

    code = "warehouse_unavailable"


class MissingDependency(TouchpointsError):
    """An optional engine or feature needs a package that is not installed."""

    code = "missing_dependency"


__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "MissingDependency",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "TouchpointsError",
    "Unauthorized",
    "WarehouseError",
]
