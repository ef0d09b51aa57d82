from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from agents.lanes import Lane, LanePicker, lane_for
from agents.retry import (
    CircuitWait,
    DeadLetterCause,
    RetryPolicy,
    Verdict,
    after_failure,
    seconds_until_due,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = RetryPolicy()


@pytest.mark.parametrize(("attempts", "delay"), [(1, 5), (2, 30), (3, 300)])
def test_default_schedule(attempts: int, delay: float) -> None:
    decision = after_failure(attempts=attempts, retriable=True, now=NOW, policy=POLICY)
    assert decision.verdict is Verdict.RETRY
    assert decision.tier == attempts
    assert decision.due_at == NOW + timedelta(seconds=delay)


def test_exhausted_after_last_tier() -> None:
    decision = after_failure(attempts=4, retriable=True, now=NOW, policy=POLICY)
    assert (decision.verdict, decision.cause) == (Verdict.DEAD_LETTER, DeadLetterCause.EXHAUSTED)


def test_fatal_goes_straight_to_dead_letters() -> None:
    decision = after_failure(attempts=1, retriable=False, now=NOW, policy=POLICY)
    assert (decision.verdict, decision.cause) == (Verdict.DEAD_LETTER, DeadLetterCause.FATAL)


def test_retry_after_and_open_circuit_push_the_due_time() -> None:
    by_header = after_failure(attempts=1, retriable=True, now=NOW, policy=POLICY, retry_after_s=42)
    by_circuit = after_failure(
        attempts=1,
        retriable=True,
        now=NOW,
        policy=POLICY,
        retry_after_s=1,
        circuit=CircuitWait(open_s=60, spread_s=30),
    )
    assert by_header.due_at == NOW + timedelta(seconds=42)
    assert by_circuit.due_at == NOW + timedelta(seconds=60)


def test_a_refused_call_is_due_when_the_circuit_half_opens_plus_its_share_of_the_spread() -> None:
    wait = CircuitWait(open_s=20, spread_s=30)
    due = [
        after_failure(
            attempts=1, retriable=True, now=NOW, policy=POLICY, circuit=wait, jitter=j
        ).due_at
        for j in (0.0, 0.5, 0.999)
    ]
    assert due[0] == NOW + timedelta(seconds=20)
    assert due[1] == NOW + timedelta(seconds=35)
    assert due[2] is not None
    assert NOW + timedelta(seconds=49.9) < due[2] < NOW + timedelta(seconds=50)
    # the tier's own delay still applies when it is longer than the circuit's wait
    late = after_failure(attempts=3, retriable=True, now=NOW, policy=POLICY, circuit=wait)
    assert late.due_at == NOW + timedelta(seconds=300)
    # and a circuit cannot park a call beyond max_delay_s
    capped = after_failure(
        attempts=1,
        retriable=True,
        now=NOW,
        policy=RetryPolicy(max_delay_s=10),
        circuit=CircuitWait(open_s=60, spread_s=60),
        jitter=0.9,
    )
    assert capped.due_at == NOW + timedelta(seconds=10)


def test_a_refusal_spends_an_attempt_like_any_failure() -> None:
    """The budget is the same with or without the circuit: ``len(delays_s)`` retries."""
    wait = CircuitWait(open_s=30, spread_s=30)
    verdicts = [
        after_failure(attempts=n, retriable=True, now=NOW, policy=POLICY, circuit=wait).verdict
        for n in range(1, POLICY.tiers + 2)
    ]
    assert verdicts == [Verdict.RETRY] * POLICY.tiers + [Verdict.DEAD_LETTER]


def test_a_request_s_max_attempts_lowers_the_budget_but_never_raises_it() -> None:
    def verdict(attempts: int, max_attempts: int) -> Verdict:
        return after_failure(
            attempts=attempts, retriable=True, now=NOW, policy=POLICY, max_attempts=max_attempts
        ).verdict

    assert [verdict(n, 2) for n in (1, 2)] == [Verdict.RETRY, Verdict.DEAD_LETTER]
    assert verdict(1, 1) is Verdict.DEAD_LETTER  # one attempt in total: no retry
    assert verdict(POLICY.tiers + 1, 99) is Verdict.DEAD_LETTER  # the tiers still bound it


def test_the_circuit_wait_is_clamped() -> None:
    assert CircuitWait(open_s=-1, spread_s=10).wait_s(2.0) == 10
    assert CircuitWait(open_s=5, spread_s=-3).wait_s(0.5) == 5


def test_deadline_past_or_before_due_expires() -> None:
    past = after_failure(
        attempts=1, retriable=False, now=NOW, policy=POLICY, deadline=NOW - timedelta(seconds=1)
    )
    too_soon = after_failure(
        attempts=1, retriable=True, now=NOW, policy=POLICY, deadline=NOW + timedelta(seconds=4)
    )
    assert past.verdict is Verdict.EXPIRE
    assert too_soon.verdict is Verdict.EXPIRE
    assert too_soon.cause is DeadLetterCause.EXPIRED


def test_configurable_delays() -> None:
    policy = RetryPolicy(delays_s=(0.2, 0.4))
    assert after_failure(
        attempts=2, retriable=True, now=NOW, policy=policy
    ).due_at == NOW + timedelta(seconds=0.4)
    assert (
        after_failure(attempts=3, retriable=True, now=NOW, policy=policy).verdict
        is Verdict.DEAD_LETTER
    )


def test_seconds_until_due() -> None:
    assert seconds_until_due(NOW + timedelta(seconds=3), NOW) == 3
    assert seconds_until_due(NOW - timedelta(seconds=3), NOW) == 0
    assert seconds_until_due(None, NOW) == 0


def test_high_first_low_never_starved() -> None:
    picker = LanePicker()
    picks = [picker.pick(list(Lane)) for _ in range(100)]
    assert picks[0] is Lane.HIGH
    assert Counter(picks) == {Lane.HIGH: 60, Lane.NORMAL: 30, Lane.LOW: 10}
    # low is served at least once in every window of 10 picks
    assert all(Lane.LOW in picks[i : i + 10] for i in range(0, 100, 10))


def test_only_ready_lanes_are_picked() -> None:
    picker = LanePicker()
    assert {picker.pick([Lane.LOW]) for _ in range(5)} == {Lane.LOW}
    assert picker.pick([]) is None


def test_lane_for_unknown_priority_is_normal() -> None:
    assert lane_for("HIGH") is Lane.HIGH
    assert lane_for("urgent") is Lane.NORMAL
    assert lane_for(None) is Lane.NORMAL


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="starves"):
        LanePicker({Lane.HIGH: 1, Lane.NORMAL: 1, Lane.LOW: 0})
