from __future__ import annotations

from connectors.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    StateChange,
)

POLICY = BreakerPolicy(
    window_s=10,
    failure_rate=0.5,
    slow_call_rate=0.8,
    slow_call_s=1.0,
    minimum_calls=4,
    open_wait_s=5,
    half_open_probes=2,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def state(breaker: CircuitBreaker) -> CircuitState:
    # a function call, so mypy does not narrow the property between clock moves
    return breaker.state


def make() -> tuple[CircuitBreaker, FakeClock, list[StateChange]]:
    clock = FakeClock()
    changes: list[StateChange] = []
    return CircuitBreaker("svc", POLICY, clock=clock, on_change=changes.append), clock, changes


def call(breaker: CircuitBreaker, *, failed: bool, duration: float = 0.1) -> bool:
    if not breaker.try_acquire():
        return False
    breaker.record(failed=failed, duration_s=duration)
    return True


def test_stays_closed_below_minimum_calls() -> None:
    breaker, _, changes = make()
    for _ in range(3):
        call(breaker, failed=True)
    assert state(breaker) is CircuitState.CLOSED
    assert changes == []


def test_opens_on_failure_rate_then_half_opens_then_closes() -> None:
    breaker, clock, changes = make()
    for failed in (False, True, False, True):
        call(breaker, failed=failed)
    assert state(breaker) is CircuitState.OPEN
    assert changes[-1].failure_rate == 0.5
    assert changes[-1].open_for_s == 5
    assert not breaker.try_acquire()
    assert breaker.open_remaining() == 5
    clock.t += 5
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # only two probes
    breaker.record(failed=False, duration_s=0.1)
    breaker.record(failed=False, duration_s=0.1)
    assert state(breaker) is CircuitState.CLOSED
    assert [(c.previous, c.state) for c in changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_failed_probe_reopens() -> None:
    breaker, clock, _ = make()
    for _ in range(4):
        call(breaker, failed=True)
    clock.t += 5
    call(breaker, failed=False)
    call(breaker, failed=True)
    assert state(breaker) is CircuitState.OPEN


def test_opens_on_slow_call_rate() -> None:
    breaker, _, changes = make()
    for _ in range(4):
        call(breaker, failed=False, duration=2.0)
    assert state(breaker) is CircuitState.OPEN
    assert changes[-1].slow_call_rate == 1.0


def test_old_outcomes_leave_the_window() -> None:
    breaker, clock, _ = make()
    for _ in range(3):
        call(breaker, failed=True)
    clock.t += 11  # the failures age out
    for _ in range(3):
        call(breaker, failed=False)
    call(breaker, failed=True)
    assert state(breaker) is CircuitState.CLOSED


def test_restore_keeps_an_open_circuit_open_for_the_rest_of_its_wait() -> None:
    breaker, clock, changes = make()
    for _ in range(4):
        call(breaker, failed=True)
    clock.t += 2
    snapshot = breaker.snapshot()
    restored_clock = FakeClock()
    restored = CircuitBreaker("svc", POLICY, clock=restored_clock)
    restored.restore(snapshot)
    assert state(restored) is CircuitState.OPEN
    assert restored.open_remaining() == 3
    restored_clock.t += 3
    assert state(restored) is CircuitState.HALF_OPEN
    assert len(changes) == 1


def test_a_probe_permit_whose_call_never_went_out_is_given_back() -> None:
    breaker, clock, _ = make()
    for failed in (True, True, True, True):
        call(breaker, failed=failed)
    clock.t += 5
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.release()  # e.g. its claim could not be written: the call was not made
    assert breaker.try_acquire()
