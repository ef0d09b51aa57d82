"""Resilience for outbound calls: token-bucket rate limits and circuit breakers.

Both are plain, synchronous state machines driven by an injectable monotonic clock, so their
decisions can be unit tested without sleeping; the executor agent awaits the waits they return.
"""

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from connectors.resilience._breaker import (
        BreakerPolicy,
        BreakerSnapshot,
        CircuitBreaker,
        CircuitState,
        StateChange,
    )
    from connectors.resilience._ratelimit import (
        RateLimit,
        RateLimitUpdate,
        TokenBucket,
        parse_retry_after,
    )

__all__ = [
    "BreakerPolicy",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitState",
    "RateLimit",
    "RateLimitUpdate",
    "StateChange",
    "TokenBucket",
    "parse_retry_after",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BreakerPolicy": "connectors.resilience._breaker",
        "BreakerSnapshot": "connectors.resilience._breaker",
        "CircuitBreaker": "connectors.resilience._breaker",
        "CircuitState": "connectors.resilience._breaker",
        "StateChange": "connectors.resilience._breaker",
        "RateLimit": "connectors.resilience._ratelimit",
        "RateLimitUpdate": "connectors.resilience._ratelimit",
        "TokenBucket": "connectors.resilience._ratelimit",
        "parse_retry_after": "connectors.resilience._ratelimit",
    },
)
