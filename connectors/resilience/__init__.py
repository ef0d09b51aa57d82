"""Resilience for outbound calls: token-bucket rate limits and circuit breakers.

Both are plain, synchronous state machines driven by an injectable monotonic clock, so their
decisions can be unit tested without sleeping; the executor agent awaits the waits they return.
"""

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
