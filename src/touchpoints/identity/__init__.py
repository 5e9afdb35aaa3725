"""The identity layer: identifiers joined into one customer, with history, and the
customer 360 profile built on it."""

from touchpoints.identity.attribution import with_customer
from touchpoints.identity.build import build
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.lookup import find_customer, profile
from touchpoints.identity.resolve import ResolveSummary, resolve

__all__ = [
    "IdentityConfig",
    "ResolveSummary",
    "build",
    "find_customer",
    "profile",
    "resolve",
    "with_customer",
]
