"""The metrics projection's batch apply gives what applying the records one by one gives."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from agents.projections.metrics import MetricsProjection
from streams.events import Event
from streams.events.calls import CallExpired, CallFailed, CallRetryScheduled, CallSucceeded
from streams.events.health import CircuitState, CircuitStateChanged, HealthChecked, HealthStatus
from streams.projections import Changes, PlainRecord, Projection
from tests.unit.projections.test_metrics_projection import T0, DictState


def _events(rng: random.Random, count: int) -> list[Event]:
    """Mixed events with event time mostly moving on, some late (past the grace period),
    circuit changes, health checks and events the projection does not count."""
    out: list[Event] = []
    clock = 0.0
    for i in range(count):
        clock += rng.expovariate(1 / 4)  # ~4 s apart: windows close inside a batch
        at = T0 + timedelta(seconds=clock - (rng.uniform(0, 200) if rng.random() < 0.1 else 0))
        service = rng.choice(("llm", "search", "geo"))
        common: dict[str, Any] = {"occurred_at": at, "service": service}
        call = {**common, "call_id": f"c{i}", "idempotency_key": f"k{i}"}
        roll = rng.random()
        if roll < 0.45:
            out.append(
                CallSucceeded(
                    **call, operation="op", status=200, attempt=0,
                    latency_ms=rng.choice((0.0, rng.lognormvariate(3, 1))),
                    cost_usd=0.001 * rng.randint(1, 9), tokens_prompt=rng.randint(1, 99),
                    tokens_completion=rng.randint(1, 99),
                    response=rng.choice((None, '{"model": "m-a"}', '{"model": "m-b"}', "[1]")),
                    model=rng.choice((None, None, "m-c")),
                )
            )  # fmt: skip
        elif roll < 0.65:
            out.append(
                CallFailed(
                    **call, operation="op", message="x", retriable=True, attempt=0,
                    # refused by an open circuit (no attempt), no latency, a negative one
                    error_class=rng.choice(("Timeout", "Http5xx", "CircuitOpenError")),
                    latency_ms=rng.choice((None, -1.0, rng.uniform(1, 900), rng.uniform(1, 900))),
                )
            )  # fmt: skip
        elif roll < 0.72:
            out.append(CallExpired(**call, operation="op", deadline=at, attempt=1))
        elif roll < 0.77:
            out.append(CallRetryScheduled(**call, due_at=at, tier=1, attempt=1))
        elif roll < 0.9:
            out.append(HealthChecked(**common, status=rng.choice(list(HealthStatus))))
        else:
            states = list(CircuitState)
            out.append(
                CircuitStateChanged(
                    **common, previous=rng.choice(states), current=rng.choice(states)
                )
            )
    return out


def _plain(events: list[Event], task: int) -> list[PlainRecord]:
    return [
        PlainRecord(type(e), PlainRecord.datum_of(e), "calls.results", task, n, 0)
        for n, e in enumerate(events)
    ]


def _one_by_one(projection: Projection, state: DictState, records: list[PlainRecord]) -> list[Any]:
    emitted: list[Any] = []
    for record in records:
        changes = projection.apply_plain(state, record)
        state.write(changes)
        emitted.extend(changes.emits)
    return emitted


def _batched(
    projection: Projection, state: DictState, records: list[PlainRecord], rng: random.Random
) -> list[Any]:
    emitted: list[Any] = []
    at = 0
    while at < len(records):
        size = rng.choice((1, 2, 7, 50, 400))
        changes: Changes = projection.apply_plain_batch(state, records[at : at + size])
        assert not set(changes.puts) & set(changes.deletes)
        state.write(changes)
        emitted.extend(changes.emits)
        at += size
    return emitted


@pytest.mark.parametrize("seed", range(6))
def test_batches_of_any_size_give_the_state_and_windows_of_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    projection = MetricsProjection(window_s=60, grace_s=rng.choice((0, 10)))
    records = _plain(_events(rng, 1_500), task=seed % 3)
    single, batched = DictState(seed % 3), DictState(seed % 3)
    expected = _one_by_one(projection, single, records)
    got = _batched(projection, batched, records, rng)
    assert len(expected) > 20  # windows did close
    # late records opened corrections (closed only by the wall-clock flush)
    assert any(v["late"] for k, v in single.data.items() if k.startswith("w/"))
    assert got == expected
    assert batched.data == single.data


def test_the_base_class_batch_is_the_fold_of_apply_plain() -> None:
    """``Projection.apply_plain_batch`` (what a projection without its own gets)."""
    rng = random.Random(9)
    projection = MetricsProjection(window_s=60, grace_s=5)
    records = _plain(_events(rng, 600), task=0)
    single, batched = DictState(), DictState()
    expected = _one_by_one(projection, single, records)
    changes = Projection.apply_plain_batch(projection, batched, records)
    batched.write(changes)
    assert list(changes.emits) == expected
    assert batched.data == single.data


def test_the_batch_does_not_touch_the_state_values_it_read() -> None:
    """``apply`` stays pure: accumulators read from the state are copied, not counted into."""
    rng = random.Random(4)
    projection = MetricsProjection(window_s=60, grace_s=10)
    records = _plain(_events(rng, 300), task=0)
    state = DictState()
    state.write(projection.apply_plain_batch(state, records[:150]))
    snapshot = repr(sorted(state.data.items()))
    projection.apply_plain_batch(state, records[150:])
    assert repr(sorted(state.data.items())) == snapshot
