"""When to try a delivery again, and what an attempt's outcome means (pure decisions).

The default schedule is Svix's: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. Tests
and demos compress it with :meth:`RetrySchedule.scaled`. Retry tier *n* (topic
``webhooks.deliveries.retry.n``) holds the attempt made after the *n*-th failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.resilience import parse_retry_after

__all__ = [
    "MAX_RETRY_AFTER_S",
    "SVIX_DELAYS_S",
    "RetrySchedule",
    "Verdict",
    "judge",
    "parse_retry_after",
]

SVIX_DELAYS_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
#: A Retry-After larger than this is treated as this (a receiver cannot park us for a week).
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class RetrySchedule:
    """Delays before retries 1..n (the first attempt is immediate)."""

    delays_s: tuple[float, ...] = SVIX_DELAYS_S

    def scaled(self, factor: float) -> RetrySchedule:
        return RetrySchedule(tuple(d * factor for d in self.delays_s))

    @property
    def attempts(self) -> int:
        return len(self.delays_s) + 1

    def delay_after(self, failures: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait after the ``failures``-th failure, or ``None`` when exhausted.

        A Retry-After from the receiver is honoured when it asks for more patience than the
        schedule would give (never less: the schedule is also our own protection)."""
        if not 1 <= failures <= len(self.delays_s):
            return None
        delay = self.delays_s[failures - 1]
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: schedule the next attempt
    GONE = "gone"  # 410: the receiver asks us to stop; disable the endpoint


#: Statuses that mean "slow down": Retry-After matters most here.
THROTTLING = frozenset({429, 502, 503, 504})


def judge(status: int | None) -> Verdict:
    """What a response status (``None``: no response at all) means for the delivery.

    3xx is a failure: redirects are never followed, a receiver must give its final URL."""
    if status is not None and 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    return Verdict.RETRY
