"""The metrics projection as a pure function: windows, grace, late corrections, circuits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.projections.metrics import MetricsProjection
from streams.consumer import Received
from streams.events import Event
from streams.events.calls import CallFailed, CallRetryScheduled, CallSucceeded
from streams.events.health import CircuitState, CircuitStateChanged, HealthChecked, HealthStatus
from streams.events.monitoring import MetricsWindow
from streams.projections import JSON, Changes, PlainRecord

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class DictState:
    def __init__(self, task: int = 0) -> None:
        self.task = task
        self.data: dict[str, JSON] = {}

    def get(self, key: str) -> JSON | None:
        return self.data.get(key)

    def write(self, changes: Changes) -> None:
        self.data.update(changes.puts)
        for key in changes.deletes:
            self.data.pop(key, None)


def run(projection: MetricsProjection, events: Sequence[Event]) -> tuple[DictState, list[Any]]:
    state = DictState()
    emitted: list[Any] = []
    for offset, event in enumerate(events):
        received = Received(event, "calls.results", 0, offset, 0, None, {})
        changes = projection.apply(state, received)
        state.write(changes)
        emitted.extend(changes.emits)
    return state, emitted


def ok(
    at_s: float,
    latency: float,
    service: str = "llm",
    response: str | None = None,
    model: str | None = None,
) -> Event:
    return CallSucceeded(
        occurred_at=T0 + timedelta(seconds=at_s),
        call_id="c",
        service=service,
        operation="chat",
        status=200,
        latency_ms=latency,
        attempt=0,
        idempotency_key="k",
        cost_usd=0.25,
        tokens_prompt=10,
        tokens_completion=5,
        response=response,
        model=model,
    )


def bad(at_s: float, error: str = "Timeout") -> Event:
    return CallFailed(
        occurred_at=T0 + timedelta(seconds=at_s),
        call_id="c",
        service="llm",
        operation="chat",
        error_class=error,
        message="x",
        retriable=True,
        attempt=0,
        latency_ms=100.0,
        idempotency_key="k",
    )


def test_a_window_closes_after_its_end_plus_grace_with_its_figures() -> None:
    projection = MetricsProjection(window_s=60, grace_s=10)
    events = [
        ok(1, 10.0, response='{"model": "gpt-x", "choices": []}'),
        ok(2, 20.0),
        bad(3),
        bad(4, "RateLimited"),
        CallRetryScheduled(
            occurred_at=T0 + timedelta(seconds=5),
            call_id="c",
            service="llm",
            due_at=T0,
            tier=1,
            attempt=1,
            idempotency_key="k",
        ),
        HealthChecked(
            occurred_at=T0 + timedelta(seconds=6), service="llm", status=HealthStatus.HEALTHY
        ),
        HealthChecked(
            occurred_at=T0 + timedelta(seconds=7), service="llm", status=HealthStatus.UNHEALTHY
        ),
        ok(65, 30.0),  # next window; the watermark is now 65 s: 60 + 10 grace not reached
    ]
    state, emitted = run(projection, events)
    assert emitted == []
    _, emitted = run(projection, [*events, ok(70, 5.0)])
    (window,) = emitted
    assert isinstance(window, MetricsWindow)
    assert (window.window_start, window.window_end) == (T0, T0 + timedelta(minutes=1))
    assert (window.calls, window.successes, window.failures) == (4, 2, 2)
    assert window.failures_by_error_class == {"Timeout": 1, "RateLimited": 1}
    assert window.retries_scheduled == 1
    assert window.error_rate == 0.5
    assert window.cost_usd == 0.5
    assert window.cost_by_model == {"gpt-x": 0.25}
    assert window.successes_by_model == {"gpt-x": 1}
    assert window.tokens_prompt == 20
    assert (window.health_checks, window.health_checks_up, window.availability) == (2, 1, 0.5)
    assert window.latency_sketch is not None
    assert window.latency_sketch.count == 4
    assert window.latency_p99_ms is not None
    assert abs(window.latency_p99_ms - 100.0) <= 1.0
    assert window.throughput_per_second == 4 / 60
    assert state.get(f"w/llm/{int(T0.timestamp() * 1000)}") is not None


def test_a_late_record_is_emitted_as_a_correction_by_the_next_flush_not_dropped() -> None:
    projection = MetricsProjection(window_s=60, grace_s=0)
    events = [ok(1, 1.0), ok(61, 1.0), ok(2, 7.0), ok(3, 2.0), ok(125, 1.0)]
    state, emitted = run(projection, events)
    assert [w.calls for w in emitted if w.window_start == T0] == [1]  # the on-time part
    flushed = projection.flush(state, int((T0 + timedelta(minutes=5)).timestamp() * 1000))
    corrections = [w for w in flushed.emits if isinstance(w, MetricsWindow)]
    (correction,) = [w for w in corrections if w.window_start == T0]
    assert correction.calls == 2  # both late records, one correction
    assert len({w.event_id for w in [*emitted, *flushed.emits]}) == len(emitted) + len(
        flushed.emits
    )


def test_same_input_gives_the_same_windows_and_ids() -> None:
    events = [ok(i, float(i)) for i in range(0, 200, 7)]
    _, a = run(MetricsProjection(), events)
    _, b = run(MetricsProjection(), events)
    assert a == b
    assert a


def test_circuit_open_time_and_openings_are_counted_in_the_windows() -> None:
    projection = MetricsProjection(window_s=60, grace_s=0)

    def change(at_s: float, previous: CircuitState, current: CircuitState) -> Event:
        return CircuitStateChanged(
            occurred_at=T0 + timedelta(seconds=at_s),
            service="llm",
            previous=previous,
            current=current,
        )

    _, emitted = run(
        projection,
        [
            change(30, CircuitState.CLOSED, CircuitState.OPEN),
            change(75, CircuitState.OPEN, CircuitState.HALF_OPEN),
            ok(121, 1.0),
        ],
    )
    first, second = emitted
    assert (first.circuit_opened, first.circuit_open_seconds) == (1, 30.0)
    assert first.circuit_state is CircuitState.OPEN
    assert (second.circuit_opened, second.circuit_open_seconds) == (0, 15.0)
    assert second.circuit_state is CircuitState.HALF_OPEN


def test_a_call_refused_by_the_open_circuit_is_no_provider_attempt() -> None:
    """A refusal spends the call's attempt, but the provider was not called: ``calls`` (attempts
    finished), ``failures``, the error rate and the latency count provider attempts only."""
    refused = CallFailed(
        occurred_at=T0 + timedelta(seconds=2),
        call_id="c",
        service="llm",
        operation="chat",
        error_class="CircuitOpenError",
        message="circuit for 'llm' is open",
        retriable=True,
        attempt=1,
        latency_ms=None,
        idempotency_key="k",
    )
    projection = MetricsProjection(window_s=60, grace_s=10)
    _, emitted = run(projection, [ok(1, 10.0), bad(1.5), refused, refused, ok(75, 5.0)])
    (window,) = emitted
    assert (window.calls, window.successes, window.failures) == (2, 1, 1)
    assert window.failures_by_error_class == {"Timeout": 1}
    assert window.error_rate == 0.5


def test_cost_by_model_comes_from_the_model_field_and_from_the_response_of_older_records() -> None:
    """``call.succeeded`` names its ``model`` (v3); older records only have the response,
    which a truncated one cannot give: both count, the field first."""
    projection = MetricsProjection(window_s=60, grace_s=0)
    truncated = '{"model": "gpt-y", "choices": [{"message": {"content": "ab'
    events = [
        ok(1, 10.0, response=truncated, model="gpt-y"),  # a response too large to keep whole
        ok(2, 10.0, model="gpt-y"),  # no response kept at all
        ok(3, 10.0, response='{"model": "gpt-x"}'),  # written before the field existed
        ok(61, 10.0),
    ]
    state = DictState()
    emitted: list[Any] = []
    for offset, event in enumerate(events):
        datum = PlainRecord.datum_of(event)
        if offset == 2:
            del datum["model"]  # what the plain reader gives for a v2 record: no such field
        changes = projection.apply_plain(
            state, PlainRecord(type(event), datum, "calls.results", 0, offset, 0)
        )
        state.write(changes)
        emitted.extend(changes.emits)
    (window,) = emitted
    assert window.successes_by_model == {"gpt-y": 2, "gpt-x": 1}
    assert window.cost_by_model == {"gpt-y": 0.5, "gpt-x": 0.25}
