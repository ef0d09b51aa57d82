"""Mixed integration events over a few minutes of event time, and their recount."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.events import Event
from streams.events.calls import (
    CallExpired,
    CallFailed,
    CallRetryScheduled,
    CallSucceeded,
)
from streams.events.health import HealthChecked, HealthStatus
from streams.sketch import Sketch

SERVICES = ("llm", "search", "geo")


def start_of_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def mixed_events(
    count: int, seed: int = 3, minutes: int = 4, at_time: datetime | None = None
) -> list[Event]:
    """``count`` events spread over ``minutes`` of event time an hour ago, or all at
    ``at_time`` if given (a live producer's ``now``); each with a fresh event id."""
    rng = random.Random(seed)
    t0 = start_of_minute(datetime.now(UTC) - timedelta(hours=1))
    events: list[Event] = []
    for i in range(count):
        service = SERVICES[i % len(SERVICES)]
        at = at_time or t0 + timedelta(seconds=rng.uniform(0, 60 * minutes))
        common = {
            "occurred_at": at,
            "call_id": f"c{i}",
            "service": service,
            "idempotency_key": f"k{i}",
        }
        roll = rng.random()
        if roll < 0.6:
            model = rng.choice(["m-small", "m-large"])
            events.append(
                CallSucceeded(
                    **common,
                    operation="op",
                    status=200,
                    latency_ms=rng.lognormvariate(3, 1),
                    attempt=0,
                    cost_usd=0.001 * rng.randint(1, 9),
                    tokens_prompt=rng.randint(1, 100),
                    tokens_completion=rng.randint(1, 100),
                    response=f'{{"model": "{model}"}}',
                )
            )
        elif roll < 0.8:
            events.append(
                CallFailed(
                    **common,
                    operation="op",
                    error_class=rng.choice(["Timeout", "RateLimited", "ServerError"]),
                    message="x",
                    retriable=True,
                    attempt=0,
                    latency_ms=rng.uniform(1, 500),
                )
            )
        elif roll < 0.9:
            events.append(CallRetryScheduled(**common, due_at=at, tier=1, attempt=1))
        elif roll < 0.95:
            events.append(CallExpired(**common, operation="op", deadline=at, attempt=1))
        else:
            status = rng.choice(list(HealthStatus))
            events.append(HealthChecked(occurred_at=at, service=service, status=status))
    return events


@dataclass
class Recount:
    calls: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    by_error: dict[str, Counter[str]] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    checks_up: Counter[str] = field(default_factory=Counter)
    cost: dict[str, float] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)
    sketches: dict[str, Sketch] = field(default_factory=dict)


def recount(events: list[Event]) -> Recount:
    out = Recount()
    for e in events:
        s = e.service  # type: ignore[attr-defined]
        if isinstance(e, CallSucceeded | CallFailed):
            out.calls[s] += 1
            out.sketches.setdefault(s, Sketch()).add(e.latency_ms or 0.0)
        if isinstance(e, CallSucceeded):
            out.successes[s] += 1
            out.cost[s] = out.cost.get(s, 0.0) + e.cost_usd
            out.tokens[s] += e.tokens_prompt + e.tokens_completion
        elif isinstance(e, CallFailed):
            out.failures[s] += 1
            out.by_error.setdefault(s, Counter())[e.error_class] += 1
        elif isinstance(e, CallRetryScheduled):
            out.retries[s] += 1
        elif isinstance(e, CallExpired):
            out.expired[s] += 1
        elif isinstance(e, HealthChecked):
            out.checks[s] += 1
            out.checks_up[s] += e.status is not HealthStatus.UNHEALTHY
    return out
