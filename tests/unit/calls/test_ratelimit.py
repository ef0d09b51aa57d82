from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors.resilience import RateLimit, TokenBucket, parse_retry_after
from connectors.resilience._ratelimit import THROTTLE_S


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_paced_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=10, burst=3), clock=clock)
    waits = [bucket.reserve() for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_tokens_refill_over_time_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=2, burst=2), clock=clock)
    bucket.reserve()
    bucket.reserve()
    clock.t += 10  # far more than needed: capped at burst
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_retry_after_blocks_everyone() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=100, burst=10), clock=clock)
    update = bucket.update({"retry-after": "7"})
    assert update is not None
    assert update.blocked_for_s == pytest.approx(7)
    assert bucket.reserve() == pytest.approx(7)
    clock.t += 7
    assert bucket.reserve() == 0.0


def test_provider_headers_change_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=100, burst=1), clock=clock)
    update = bucket.update({"x-ratelimit-limit": "20", "x-ratelimit-reset": "10"})
    assert update is not None
    assert bucket.rate == pytest.approx(2.0)
    bucket.reserve()
    assert bucket.reserve() == pytest.approx(0.5)


def test_remaining_zero_blocks_until_reset() -> None:
    bucket = TokenBucket(RateLimit(rate=5, burst=5), clock=FakeClock())
    bucket.update(
        {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}
    )
    assert bucket.blocked_for() == pytest.approx(1.0)


def test_irrelevant_headers_change_nothing() -> None:
    bucket = TokenBucket(RateLimit(rate=5), clock=FakeClock())
    assert bucket.update({"content-type": "application/json"}) is None


def test_parse_retry_after_seconds_and_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12") == 12
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    )
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0


def test_a_storm_of_429s_is_one_throttle_then_one_lift() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=50, burst=5), clock=clock)
    first = bucket.throttle(2.0, "429 Retry-After: 2 s")
    assert first is not None
    assert (first.rate, first.previous_rate) == (0.0, 50)
    assert first.blocked_for_s == pytest.approx(2.0)
    clock.t += 1
    assert [bucket.throttle(3.0, "429") for _ in range(20)] == [None] * 20  # only lengthens it
    assert bucket.reserve() == pytest.approx(3.0)
    assert bucket.lifted() is None  # still paused
    clock.t += 3
    lifted = bucket.lifted()
    assert lifted is not None
    assert (lifted.rate, lifted.previous_rate, lifted.reason) == (50, 0.0, "throttle lifted")
    assert bucket.lifted() is None  # once
    assert bucket.throttle(None, "429") is not None  # a new pause is a new change


def test_a_429_without_retry_after_pauses_for_the_default() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=50, burst=5), clock=clock)
    for retry_after in (None, 0.0):
        update = bucket.throttle(retry_after, "429")
        assert update is not None
        assert update.blocked_for_s == pytest.approx(THROTTLE_S)
        clock.t += THROTTLE_S
        assert bucket.lifted() is not None
