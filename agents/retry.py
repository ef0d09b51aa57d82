"""Retry tiers: where a failed call goes next, decided by a pure function.

A failed attempt is retried through tier topics ``calls.retry.1..N`` with increasing delays (default
5 s, 30 s, 5 min). ``Retry-After`` from the provider and an open circuit push the due time out.
Fatal errors go straight to the dead letters; a deadline that passes (or would pass before the
next attempt is due) ends the call as expired.

Every attempt spends one unit of the budget, whether the provider answered it or the service's
open circuit refused it, so a call is retried at most ``len(delays_s)`` times, whatever its
service does. (When refusals were free, calls parked behind a circuit that kept failing its
half-open probes were refused and parked again for ever: issue 12's retry storm.) A refused
call's retry is due when the circuit may let probes through plus a random share of the open
wait (:class:`CircuitWait`), so the parked calls come back spread out, not as one herd.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    """Delays of the retry tiers, in order; their count is the number of retries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delays_s: tuple[float, ...] = Field(default=(5.0, 30.0, 300.0), min_length=1)
    #: The longest a Retry-After or an open circuit may push a retry out (beyond its tier delay).
    max_delay_s: float = Field(default=3600.0, gt=0)
    #: A tier record due later than its longest possible delay plus this is poison (dead-lettered).
    due_margin_s: float = Field(default=60.0, ge=0)

    @property
    def tiers(self) -> int:
        return len(self.delays_s)

    def longest_delay_s(self, tier: int) -> float:
        """The furthest out a record of ``tier`` (1-based) can be due when it is written."""
        return max(self.delays_s[min(max(tier, 1), self.tiers) - 1], self.max_delay_s)


class Verdict(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    EXPIRE = "expire"


class DeadLetterCause(StrEnum):
    FATAL = "fatal"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    tier: int | None = None  # 1-based tier topic for RETRY
    due_at: datetime | None = None
    cause: DeadLetterCause | None = None


@dataclass(frozen=True)
class CircuitWait:
    """An open (or half-open, probes all out) circuit refused the attempt."""

    #: Seconds until the circuit lets probes through (0 when it is half-open already).
    open_s: float
    #: The window the refused calls' retries are spread over (the breaker's open wait).
    spread_s: float

    def wait_s(self, jitter: float) -> float:
        """The wait for a ``jitter`` in [0, 1): the open time left plus that share of the spread."""
        return max(0.0, self.open_s) + min(max(jitter, 0.0), 1.0) * max(0.0, self.spread_s)


def expired(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and now >= deadline


def after_failure(
    *,
    attempts: int,
    retriable: bool,
    now: datetime,
    policy: RetryPolicy,
    deadline: datetime | None = None,
    retry_after_s: float | None = None,
    circuit: CircuitWait | None = None,
    jitter: float = 0.0,
    max_attempts: int | None = None,
) -> RetryDecision:
    """Decide the fate of a call whose ``attempts``-th attempt (1-based) just failed, or was
    refused by its open ``circuit`` (which spends the attempt all the same). ``jitter`` in [0, 1)
    places a refused call's retry within the circuit's spread. ``max_attempts`` (the request's,
    when it sets one) can only lower the budget the tiers give, never raise it."""
    if expired(deadline, now):
        return RetryDecision(Verdict.EXPIRE, cause=DeadLetterCause.EXPIRED)
    if not retriable:
        return RetryDecision(Verdict.DEAD_LETTER, cause=DeadLetterCause.FATAL)
    if attempts > policy.tiers or (max_attempts is not None and attempts >= max_attempts):
        return RetryDecision(Verdict.DEAD_LETTER, cause=DeadLetterCause.EXHAUSTED)
    attempts = max(1, attempts)
    delay = min(
        max(
            policy.delays_s[attempts - 1],
            retry_after_s or 0.0,
            0.0 if circuit is None else circuit.wait_s(jitter),
        ),
        policy.longest_delay_s(attempts),
    )
    due = now + timedelta(seconds=delay)
    if deadline is not None and due >= deadline:
        # Waiting past the deadline cannot help: end it now rather than hold it in a tier.
        return RetryDecision(Verdict.EXPIRE, cause=DeadLetterCause.EXPIRED)
    return RetryDecision(Verdict.RETRY, tier=attempts, due_at=due)


def due_too_late(
    due_at: datetime | None, tier: int, policy: RetryPolicy, now: datetime
) -> str | None:
    """Why a tier record's due time cannot have been written by us (None: it is plausible).

    Such a record (``9999-01-01``) would hold its partition, and every due retry behind it,
    for good: it is poison, to be dead-lettered with this reason.
    """
    if due_at is None:
        return None
    horizon = policy.longest_delay_s(tier) + policy.due_margin_s
    if (due_at - now).total_seconds() <= horizon:
        return None
    return (
        f"due at {due_at.isoformat()}, more than {horizon:g} s away: beyond the longest delay of "
        f"retry tier {tier} plus {policy.due_margin_s:g} s"
    )


def seconds_until_due(due_at: datetime | None, now: datetime) -> float:
    if due_at is None:
        return 0.0
    return max(0.0, (due_at - now).total_seconds())
