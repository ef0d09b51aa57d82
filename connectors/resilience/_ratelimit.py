"""A token bucket per service, corrected at run time by what the provider says.

Providers report their real limits in headers (``x-ratelimit-limit``, ``x-ratelimit-remaining``,
``x-ratelimit-reset``) and push callers back with ``Retry-After``; the bucket follows both so the
declared limit is only the starting point.

A 429 *throttles* the bucket (:meth:`TokenBucket.throttle`): no token for its ``Retry-After``, or
:data:`THROTTLE_S` without one. Being throttled is limit state: entering it and leaving it (the
first token taken after the pause, :meth:`TokenBucket.lifted`) are one change each, however many
429s arrive during the pause, so their reports cannot flood a topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, ConfigDict, Field

Clock = Callable[[], float]

#: How long a 429 without a (positive) ``Retry-After`` pauses a service's calls.
THROTTLE_S = 1.0


class RateLimit(BaseModel):
    """A declared limit: ``rate`` requests per second on average, bursts of up to ``burst``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class RateLimitUpdate:
    """What changed after reading provider headers (reported as ``integration.rate_limit_changed``)."""

    rate: float  # 0 while throttled
    burst: int
    blocked_for_s: float
    reason: str
    previous_rate: float | None = None


def parse_retry_after(value: str | None, *, now: datetime | float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date, relative to
    ``now``: a datetime or unix seconds); None if absent or unreadable. The one parser for calls,
    webhook deliveries and anything else that honours a ``Retry-After``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime):
        now = datetime.fromtimestamp(now, UTC)
    return max(0.0, (when - now).total_seconds())


class TokenBucket:
    """Classic token bucket; ``reserve`` hands out waits so concurrent callers queue fairly."""

    def __init__(self, limit: RateLimit, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rate = limit.rate
        self._burst = limit.burst
        self._tokens = float(limit.burst)
        self._stamp = clock()
        self._blocked_until = 0.0
        self._throttled = False

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> int:
        return self._burst

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self._burst), self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def reserve(self) -> float:
        """Take one token, possibly on credit; return how long the caller must wait before using it.

        Tokens may go negative: each waiter reserves its own future slot, so N waiters are spread
        over N / rate seconds instead of all waking at once.
        """
        now = self._clock()
        self._refill(now)
        self._tokens -= 1.0
        wait = 0.0 if self._tokens >= 0 else -self._tokens / self._rate
        return max(wait, self._blocked_until - now)

    def take(self) -> float:
        """Take a token if one is there now (returns 0); else take nothing and return how long
        until one will be (for callers that refuse rather than wait, e.g. a 429)."""
        now = self._clock()
        self._refill(now)
        blocked = self._blocked_until - now
        if self._tokens >= 1 and blocked <= 0:
            self._tokens -= 1.0
            return 0.0
        return max((1 - self._tokens) / self._rate, blocked)

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def block_for(self, seconds: float) -> None:
        """Nobody gets a token for ``seconds`` (a ``Retry-After`` or a 429)."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - self._clock())

    @property
    def throttled(self) -> bool:
        return self._throttled

    def throttle(self, retry_after_s: float | None, reason: str) -> RateLimitUpdate | None:
        """A 429: no token for ``retry_after_s`` (:data:`THROTTLE_S` if absent or 0). Returns the
        change when the bucket was not throttled yet; None for a 429 during a pause (it may only
        lengthen it)."""
        self.block_for(retry_after_s if retry_after_s and retry_after_s > 0 else THROTTLE_S)
        if self._throttled:
            return None
        self._throttled = True
        return RateLimitUpdate(0.0, self._burst, self.blocked_for(), reason, self._rate)

    def lifted(self) -> RateLimitUpdate | None:
        """The end of a throttle, reported once (call it when a token was taken); else None."""
        if not self._throttled or self.blocked_for() > 0:
            return None
        self._throttled = False
        return RateLimitUpdate(self._rate, self._burst, 0.0, "throttle lifted", 0.0)

    def update(self, headers: Mapping[str, str]) -> RateLimitUpdate | None:
        """Follow provider headers; returns what changed, or None when nothing did.

        ``headers`` keys must be lower case.
        """
        reasons: list[str] = []
        previous = self._rate
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after:
            self.block_for(retry_after)
            reasons.append(f"retry-after {retry_after:g}s")
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if limit and reset and reset > 0:
            # Limit per reset window; values above ~1e9 are epoch timestamps (ms or s), not windows.
            window = _window_seconds(reset)
            if window is not None:
                new_rate = limit / window
                if abs(new_rate - self._rate) / self._rate > 0.01:
                    self._refill(self._clock())
                    self._rate = new_rate
                    reasons.append(f"limit {limit:g}/{window:g}s")
        if remaining is not None and remaining <= 0 and reset:
            window = _window_seconds(reset)
            if window:
                self.block_for(window)
                reasons.append("remaining 0")
        if not reasons:
            return None
        return RateLimitUpdate(
            self._rate, self._burst, self.blocked_for(), ", ".join(reasons), previous
        )


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _window_seconds(reset: float) -> float | None:
    if reset > 1e12:  # epoch milliseconds
        return max(0.0, reset / 1000 - time.time()) or None
    if reset > 1e9:  # epoch seconds
        return max(0.0, reset - time.time()) or None
    return reset
