from __future__ import annotations

import email.utils

import pytest

from connectors.webhooks import SVIX_DELAYS_S, RetrySchedule, Verdict, judge, parse_retry_after


def test_svix_schedule() -> None:
    schedule = RetrySchedule()
    assert schedule.attempts == 8
    got = [schedule.delay_after(n) for n in range(1, 9)]
    assert got == [5, 300, 1800, 7200, 18000, 36000, 36000, None]
    assert schedule.delay_after(0) is None


def test_scaled_schedule() -> None:
    fast = RetrySchedule().scaled(0.001)
    assert fast.delays_s == tuple(d * 0.001 for d in SVIX_DELAYS_S)


def test_retry_after_extends_but_never_shortens() -> None:
    schedule = RetrySchedule((10, 20))
    assert schedule.delay_after(1, retry_after_s=60) == 60
    assert schedule.delay_after(1, retry_after_s=1) == 10
    assert schedule.delay_after(2, retry_after_s=10**9) == 24 * 3600


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", now=0) == 120
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None
    date = email.utils.formatdate(1_700_000_100, usegmt=True)
    assert parse_retry_after(date, now=1_700_000_000) == pytest.approx(100)
    assert parse_retry_after(date, now=1_800_000_000) == 0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (301, Verdict.RETRY),
        (302, Verdict.RETRY),
        (400, Verdict.RETRY),
        (410, Verdict.GONE),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (None, Verdict.RETRY),
    ],
)
def test_judge(status: int | None, verdict: Verdict) -> None:
    assert judge(status) is verdict
