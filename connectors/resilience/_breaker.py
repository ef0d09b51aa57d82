"""A circuit breaker per service, in the shape of resilience4j's time-based breaker.

CLOSED: calls flow; outcomes go into a sliding time window. Once the window holds at least
``minimum_calls`` outcomes and the failure rate or the slow-call rate reaches its threshold, the
breaker OPENs. OPEN: calls are refused for ``open_wait_s``. HALF_OPEN: ``half_open_probes`` calls
are let through; when all have reported, the breaker closes if their rates are under the
thresholds and opens again otherwise.

Every transition is handed to ``on_change`` (the executor publishes it as
``integration.circuit_state_changed``); :meth:`CircuitBreaker.restore` rebuilds the state from the
last such event, so an open circuit stays open across a worker restart.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

Clock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(default=60.0, gt=0)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    slow_call_rate: float = Field(default=1.0, gt=0, le=1)
    slow_call_s: float = Field(default=10.0, gt=0)
    minimum_calls: int = Field(default=10, ge=1)
    open_wait_s: float = Field(default=30.0, ge=0)
    half_open_probes: int = Field(default=3, ge=1)


@dataclass(frozen=True)
class StateChange:
    service: str
    previous: CircuitState
    state: CircuitState
    failure_rate: float
    slow_call_rate: float
    calls: int
    #: Seconds the breaker will refuse calls (OPEN only).
    open_for_s: float


@dataclass(frozen=True)
class BreakerSnapshot:
    """What survives a restart: the state and how long ago it was entered."""

    state: CircuitState
    age_s: float


@dataclass(frozen=True)
class _Outcome:
    at: float
    failed: bool
    slow: bool


class CircuitBreaker:
    def __init__(
        self,
        service: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
        on_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.service = service
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._since = clock()
        self._window: deque[_Outcome] = deque()
        # Running counts over the window, so each outcome costs O(1) instead of a rescan.
        self._failed = 0
        self._slow = 0
        self._probes_out = 0
        self._probes: list[_Outcome] = []

    # --- queries --------------------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        self._advance()
        return self._state

    def open_remaining(self) -> float:
        """Seconds until an OPEN breaker lets probes through (0 when not open)."""
        self._advance()
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._since + self.policy.open_wait_s - self._clock())

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(self.state, self._clock() - self._since)

    # --- decisions ------------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """May a call go out now? In HALF_OPEN this takes one of the probe permits."""
        self._advance()
        if self._state is CircuitState.CLOSED:
            return True
        if (
            self._state is CircuitState.HALF_OPEN
            and self._probes_out < self.policy.half_open_probes
        ):
            self._probes_out += 1
            return True
        return False

    def release(self) -> None:
        """Give back a permit of :meth:`try_acquire` whose call never went out."""
        if self._state is CircuitState.HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1

    def record(self, *, failed: bool, duration_s: float) -> None:
        """Report the outcome of a call that :meth:`try_acquire` let through."""
        now = self._clock()
        outcome = _Outcome(now, failed, duration_s >= self.policy.slow_call_s)
        self._advance()
        if self._state is CircuitState.HALF_OPEN:
            self._probes.append(outcome)
            if len(self._probes) >= self.policy.half_open_probes:
                failure, slow = _rates(self._probes)
                tripped = self._tripped(failure, slow)
                self._move(CircuitState.OPEN if tripped else CircuitState.CLOSED, failure, slow)
            return
        if self._state is CircuitState.OPEN:  # a call started before the breaker opened
            return
        self._window.append(outcome)
        self._failed += outcome.failed
        self._slow += outcome.slow
        self._evict(now)
        n = len(self._window)
        if n >= self.policy.minimum_calls:
            failure, slow = self._failed / n, self._slow / n
            if self._tripped(failure, slow):
                self._move(CircuitState.OPEN, failure, slow)

    def restore(self, snapshot: BreakerSnapshot) -> None:
        """Resume from a persisted state (no change event: it is already on record)."""
        self._state = snapshot.state
        self._since = self._clock() - max(0.0, snapshot.age_s)
        self._window.clear()
        self._failed = self._slow = 0
        self._probes.clear()
        self._probes_out = 0
        self._advance()

    # --- internals ------------------------------------------------------------------------------
    def _tripped(self, failure: float, slow: float) -> bool:
        return failure >= self.policy.failure_rate or slow >= self.policy.slow_call_rate

    def _evict(self, now: float) -> None:
        horizon = now - self.policy.window_s
        while self._window and self._window[0].at < horizon:
            old = self._window.popleft()
            self._failed -= old.failed
            self._slow -= old.slow

    def _advance(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._clock() >= self._since + self.policy.open_wait_s
        ):
            self._move(CircuitState.HALF_OPEN, 0.0, 0.0)

    def _move(self, state: CircuitState, failure: float, slow: float) -> None:
        previous, calls = self._state, len(self._probes) or len(self._window)
        self._state = state
        self._since = self._clock()
        self._window.clear()
        self._failed = self._slow = 0
        self._probes.clear()
        self._probes_out = 0
        if self._on_change is not None:
            open_for = self.policy.open_wait_s if state is CircuitState.OPEN else 0.0
            self._on_change(
                StateChange(self.service, previous, state, failure, slow, calls, open_for)
            )


def _rates(outcomes: list[_Outcome]) -> tuple[float, float]:
    n = len(outcomes)
    if n == 0:
        return 0.0, 0.0
    return sum(o.failed for o in outcomes) / n, sum(o.slow for o in outcomes) / n
