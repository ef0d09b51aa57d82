"""Integration-health events: health checks, circuit breaker states and rate limits per service.

``integration.circuit_state_changed`` goes to the compacted ``integration.circuits`` topic, so the
latest record per service is the breaker's state that workers restore on restart.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event

_SERVICE = "External service (a connector name, e.g. `openai`)."


class HealthStatus(StrEnum):
    """Health of an external service as seen from Backbone."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class CircuitState(StrEnum):
    """State of a circuit breaker."""

    CLOSED = "closed"  # calls flow
    OPEN = "open"  # calls are refused until the cool-down ends
    HALF_OPEN = "half_open"  # a few trial calls decide between closed and open


class _ServiceEvent(Event):
    key_field: ClassVar[str] = "service"

    service: str = Field(description=_SERVICE)


class HealthChecked(_ServiceEvent):
    """The result of a health check of an external service."""

    event_type: ClassVar[str] = "integration.health_checked"

    status: HealthStatus = Field(description="Health found by the check.")
    latency_ms: float | None = Field(default=None, description="Duration of the check, if run.")
    detail: str = Field(default="", description="What the check saw, for operators.")


class CircuitStateChanged(_ServiceEvent):
    """A service's circuit breaker changed state."""

    event_type: ClassVar[str] = "integration.circuit_state_changed"

    previous: CircuitState = Field(description="State before the change.")
    current: CircuitState = Field(description="State after the change.")
    reason: str = Field(default="", description="Why it changed (e.g. failure rate above limit).")
    failure_count: int = Field(default=0, description="Failures counted in the breaker's window.")
    open_until: datetime | None = Field(
        default=None, description="When an open breaker lets trial calls through (UTC)."
    )


class RateLimitChanged(_ServiceEvent):
    """The rate limit applied to a service changed (configured, or learned from its responses)."""

    event_type: ClassVar[str] = "integration.rate_limit_changed"

    limit_per_second: float = Field(description="New sustained limit in calls per second.")
    burst: int = Field(description="New burst size (token bucket capacity).")
    previous_limit_per_second: float | None = Field(
        default=None, description="Limit before the change, if there was one."
    )
    reason: str = Field(default="", description="Why it changed (e.g. `429 Retry-After: 30`).")
