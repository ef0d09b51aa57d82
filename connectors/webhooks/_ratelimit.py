"""Per-endpoint rate limits: one shared token bucket (:class:`connectors.resilience.TokenBucket`)
per endpoint, refilled continuously."""

from __future__ import annotations

from connectors.resilience import RateLimit, TokenBucket

__all__ = ["EndpointLimits", "TokenBucket"]


class EndpointLimits:
    """One bucket per endpoint; ``None`` rate means unlimited."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, endpoint_id: str, rate_per_s: float | None) -> None:
        if not rate_per_s:
            return
        bucket = self._buckets.get(endpoint_id)
        if bucket is None or bucket.rate != rate_per_s:
            limit = RateLimit(rate=rate_per_s, burst=max(1, int(rate_per_s)))
            bucket = self._buckets[endpoint_id] = TokenBucket(limit)
        # each waiter sleeps exactly until its own token is due (no polling, no thundering herd)
        await bucket.acquire()
