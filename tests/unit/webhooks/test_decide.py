from __future__ import annotations

import pytest

from connectors.resilience import RateLimit, TokenBucket
from connectors.webhooks import RetrySchedule
from connectors.webhooks._decide import Action, decide

SCHEDULE = RetrySchedule((5, 300, 1800))
NOW = 1_700_000_000.0


def _decide(status: int | None, failures_before: int = 0, **kw: object) -> object:
    args: dict[str, object] = {
        "status": status,
        "error": None if status else "timeout",
        "failures_before": failures_before,
        "retry_after_s": None,
        "schedule": SCHEDULE,
        "now": NOW,
        "failing_since": None,
        "disable_after_s": 5 * 86400,
    }
    args.update(kw)
    return decide(**args)  # type: ignore[arg-type]


def test_delivered() -> None:
    assert _decide(200).action is Action.DELIVERED  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("failures_before", "tier", "delay"), [(0, 1, 5), (1, 2, 300), (2, 3, 1800)]
)
def test_retry_tiers_follow_schedule(failures_before: int, tier: int, delay: float) -> None:
    d = _decide(500, failures_before)
    assert d.action is Action.RETRY  # type: ignore[attr-defined]
    assert d.tier == tier  # type: ignore[attr-defined]
    assert d.due_at == NOW + delay  # type: ignore[attr-defined]


def test_exhausted_goes_to_dead_letter() -> None:
    d = _decide(None, failures_before=3)
    assert d.action is Action.DEAD_LETTER  # type: ignore[attr-defined]
    assert "timeout" in d.reason  # type: ignore[attr-defined]


def test_gone_disables() -> None:
    assert _decide(410).action is Action.DISABLE  # type: ignore[attr-defined]


def test_redirect_is_retried_not_followed() -> None:
    assert _decide(301).action is Action.RETRY  # type: ignore[attr-defined]


def test_retry_after_pushes_due_time() -> None:
    d = _decide(429, retry_after_s=120.0)
    assert d.due_at == NOW + 120  # type: ignore[attr-defined]


def test_failing_for_too_long_disables() -> None:
    d = _decide(500, failing_since=NOW - 5 * 86400)
    assert d.action is Action.DISABLE  # type: ignore[attr-defined]
    d = _decide(500, failing_since=NOW - 5 * 86400 + 1)
    assert d.action is Action.RETRY  # type: ignore[attr-defined]


def test_token_bucket_take_and_reservations_queue_up() -> None:
    """The one bucket (connectors.resilience) the endpoint limits, calls and gateway share."""
    clock = [100.0]
    bucket = TokenBucket(RateLimit(rate=10, burst=2), clock=lambda: clock[0])
    assert [bucket.take(), bucket.take()] == [0, 0]
    assert bucket.take() == pytest.approx(0.1)  # nothing taken
    clock[0] += 0.11
    assert bucket.take() == 0
    queued = TokenBucket(RateLimit(rate=10, burst=1), clock=lambda: clock[0])
    assert [queued.reserve() for _ in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("status", [429, 503, None])
def test_a_throttled_or_refused_delivery_spends_an_attempt_so_every_delivery_ends(
    status: int | None,
) -> None:
    """Issue 12's retry storm came from calls refused without spending an attempt. Deliveries
    have no such path: the only "slow down" answers (429, 503 with Retry-After, no answer at all)
    count as failures, and the endpoint's rate limit waits in the worker instead of refusing, so
    following one delivery's decisions ends after the schedule's attempts."""
    failures, decisions = 0, list[Action]()
    while len(decisions) <= 10:
        d = _decide(status, failures, retry_after_s=60.0)
        decisions.append(d.action)  # type: ignore[attr-defined]
        if d.action is not Action.RETRY:  # type: ignore[attr-defined]
            break
        failures += 1  # the retry record's attempt is the next one (agents.webhooks._outcomes)
    assert decisions == [Action.RETRY] * len(SCHEDULE.delays_s) + [Action.DEAD_LETTER]
