"""The identity layer: identifiers joined into one customer, with history."""

from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.resolve import ResolveSummary, resolve

__all__ = ["IdentityConfig", "ResolveSummary", "resolve"]
