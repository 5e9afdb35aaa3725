"""Rate limits per key on the read and admin API (the collector has its own, per write
key): a token bucket of `rate_limit` requests a second with bursts up to `burst`.
Over it, a request gets 429 with `Retry-After` (whole seconds). The server's control
token (the command line on the same machine) is not limited."""

from __future__ import annotations

from dataclasses import dataclass

from touchpoints.collect.ratelimit import RateLimiter
from touchpoints.errors import RateLimited
from touchpoints.privacy.audit import CONTROL_ACTOR
from touchpoints.privacy.keys import Caller


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the read and admin API, from the server's settings."""

    rate_limit: float = 50.0  # requests a second per read or admin key
    burst: float = 100.0  # requests a key may send at once after a quiet spell
    retention_every_s: float | None = 86_400.0  # how often retention runs (None: never)
    activation_every_s: float | None = 1.0  # how often triggers and webhooks run (None: never)


class ApiLimiter:
    """Spends one token of the caller's bucket per request."""

    def __init__(self, settings: ApiSettings | None = None) -> None:
        self.settings = settings or ApiSettings()
        if self.settings.burst < 1:
            raise ValueError("burst must allow at least one request")
        self._buckets = RateLimiter(self.settings.rate_limit, self.settings.burst)

    def take(self, caller: Caller) -> None:
        """Count one request of `caller`, or raise RateLimited (429 with Retry-After)."""
        if caller.key_id == CONTROL_ACTOR:
            return
        try:
            self._buckets.take(caller.key_id)
        except RateLimited as exc:
            raise RateLimited(
                f"this key sends more than {self.settings.rate_limit:g} requests a second; "
                f"retry after {exc.retry_after} s",
                retry_after=exc.retry_after,
            ) from None
