"""Per-endpoint rate limits: a token bucket per endpoint, refilled continuously."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.updated = time.monotonic()

    def reserve(self, now: float | None = None) -> float:
        """Take a token now or in the future; returns how long to wait for it."""
        t = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (t - self.updated) * self.rate_per_s)
        self.updated = t
        self.tokens -= 1  # may go negative: a debt later callers wait behind
        return max(0.0, -self.tokens / self.rate_per_s)

    def wait_time(self, now: float | None = None) -> float:
        """Take a token if one is there (returns 0), else how long until one will be."""
        t = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (t - self.updated) * self.rate_per_s)
        self.updated = t
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class EndpointLimits:
    """One bucket per endpoint; ``None`` rate means unlimited."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, endpoint_id: str, rate_per_s: float | None) -> None:
        if not rate_per_s:
            return
        bucket = self._buckets.get(endpoint_id)
        if bucket is None or bucket.rate_per_s != rate_per_s:
            bucket = self._buckets[endpoint_id] = TokenBucket(rate_per_s, max(1.0, rate_per_s))
        # each waiter sleeps exactly until its own token is due (no polling, no thundering herd)
        wait = bucket.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
