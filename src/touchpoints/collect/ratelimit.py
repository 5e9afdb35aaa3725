"""A token bucket per key: events per second with a burst allowance."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from touchpoints.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Allows `rate` units a second per key, with bursts up to `burst` units."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, units: float = 1.0) -> None:
        """Spend `units` from the key's bucket, or raise RateLimited with Retry-After."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if units <= bucket.tokens:
                bucket.tokens -= units
                return
            wait = (min(units, self.burst) - bucket.tokens) / self.rate
        raise RateLimited(
            f"this key sends more than {self.rate:g} events a second; slow down",
            retry_after=max(1, math.ceil(wait)),
        )
