"""Token buckets by name, for the ping and API rate limits.

A bucket holds ``burst`` tokens and refills at ``rate`` a second; a request
takes one or is refused. A bucket left alone long enough to fill up again is
the same as no bucket, so those are dropped: memory stays within what the
requests of the last two refill periods can make, whatever names they bring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """``rate`` requests a second per name on average, ``burst`` at once."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limiter needs a positive rate and a burst of 1+")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.refill = burst / rate
        """Seconds an empty bucket takes to fill up."""
        self.buckets: dict[str, tuple[float, float]] = {}
        """Name → (tokens left, when counted)."""
        self._prune_at = 0.0

    def take(self, name: str) -> float:
        """Take a token: 0.0 when allowed, else seconds until one is back."""
        now = self.clock()
        if now >= self._prune_at:
            self._prune(now)
        bucket = self.buckets.get(name)
        if bucket is None:
            tokens = self.burst
        else:
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        if tokens < 1.0:
            self.buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self.buckets[name] = (tokens - 1.0, now)
        return 0.0

    def wait(self, name: str) -> float:
        """Seconds until ``name`` may take a token (0.0: now), taking none."""
        bucket = self.buckets.get(name)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket[0] + (self.clock() - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def retry_after(self, wait: float) -> str:
        """A Retry-After value in whole seconds, never 0."""
        return str(max(1, math.ceil(wait)))

    def _prune(self, now: float) -> None:
        cutoff = now - self.refill
        self.buckets = {
            name: bucket for name, bucket in self.buckets.items() if bucket[1] > cutoff
        }
        self._prune_at = now + max(self.refill, 1.0)
