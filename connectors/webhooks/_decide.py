"""What the delivery worker does after an attempt: a pure function of the attempt and the schedule.

Kept apart from Kafka and HTTP so every branch (delivered, next tier, dead letter, disable) is a
plain unit test.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.webhooks._schedule import RetrySchedule, Verdict, judge


class Action(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # to retry tier ``tier`` until ``due_at``
    DEAD_LETTER = "dead_letter"  # schedule exhausted
    DISABLE = "disable"  # 410, or the endpoint has failed for too long; dead-letter this one too


@dataclass(frozen=True)
class Decision:
    action: Action
    tier: int = 0
    due_at: float = 0.0
    reason: str = ""


def decide(
    *,
    status: int | None,
    error: str | None,
    failures_before: int,
    retry_after_s: float | None,
    schedule: RetrySchedule,
    now: float,
    failing_since: float | None,
    disable_after_s: float,
) -> Decision:
    """Decide after an attempt.

    ``failures_before`` counts the failed attempts before this one; ``failing_since`` is when the
    endpoint's current run of failures began (``None`` if its last attempt succeeded)."""
    verdict = judge(status)
    if verdict is Verdict.DELIVERED:
        return Decision(Action.DELIVERED)
    reason = error or f"http_{status}"
    if verdict is Verdict.GONE:
        return Decision(Action.DISABLE, reason="http_410")
    started = now if failing_since is None else failing_since
    if now - started >= disable_after_s:
        return Decision(Action.DISABLE, reason=f"failing for {now - started:.0f} s: {reason}")
    failures = failures_before + 1
    delay = schedule.delay_after(failures, retry_after_s)
    if delay is None:
        return Decision(Action.DEAD_LETTER, reason=f"exhausted after {failures} attempts: {reason}")
    return Decision(Action.RETRY, tier=failures, due_at=now + delay, reason=reason)
