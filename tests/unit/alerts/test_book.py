"""The alert evaluation as plain code: for-durations, hysteresis, determinism, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from agents.alerts import AlertBook, AlertKind, AlertLog, AlertRule, window_value
from streams.events.health import CircuitState, CircuitStateChanged
from streams.events.monitoring import AlertRaised, AlertResolved, MetricsWindow

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
ERRORS = AlertRule(
    name="HighErrorRate",
    kind=AlertKind.ERROR_RATE,
    raise_at=0.10,
    resolve_at=0.05,
    for_s=120,
    min_calls=10,
)
#: error rates hovering around 0.10 for a while, then back to normal
HOVERING = [
    0.02,
    0.11,
    0.09,
    0.12,
    0.11,
    0.13,
    0.10,
    0.08,
    0.12,
    0.09,
    0.11,
    0.06,
    0.12,
    0.03,
    0.04,
]


def window(
    minute: int, error_rate: float, service: str = "search", **fields: object
) -> MetricsWindow:
    calls = 100
    failures = round(error_rate * calls)
    base: dict[str, object] = {
        "service": service,
        "window_start": T0 + timedelta(minutes=minute),
        "window_end": T0 + timedelta(minutes=minute + 1),
        "calls": calls,
        "successes": calls - failures,
        "failures": failures,
        "throughput_per_second": calls / 60,
        "error_rate": failures / calls,
    }
    base.update(fields)
    return MetricsWindow.model_validate(base)


def run(book: AlertBook, windows: list[MetricsWindow]) -> list[AlertRaised | AlertResolved]:
    """Apply the windows, then evaluate what is still open (the last window waits for a later one)."""
    return [event for w in windows for event in book.apply_window(w)] + book.flush()


def test_a_hovering_value_raises_and_resolves_exactly_once() -> None:
    events = run(AlertBook([ERRORS]), [window(i, r) for i, r in enumerate(HOVERING)])
    assert [type(e) for e in events] == [AlertRaised, AlertResolved]
    raised, resolved = events
    assert isinstance(raised, AlertRaised)
    assert isinstance(resolved, AlertResolved)
    assert raised.alert_id == resolved.alert_id
    # breach began at minute 1, but 0.09 at minute 2 interrupted it: minutes 3..4 are the 2 minutes
    assert raised.occurred_at == T0 + timedelta(minutes=5)
    assert raised.labels["since"] == (T0 + timedelta(minutes=3)).isoformat()
    assert raised.value == pytest.approx(0.11)
    assert resolved.occurred_at == T0 + timedelta(minutes=14)  # 0.03 is the first below 0.05
    assert resolved.raised_at == raised.occurred_at


def test_without_hysteresis_the_same_values_flap() -> None:
    flappy = ERRORS.model_copy(update={"resolve_at": None, "for_s": 0})
    events = run(AlertBook([flappy]), [window(i, r) for i, r in enumerate(HOVERING)])
    assert sum(isinstance(e, AlertRaised) for e in events) > 2  # what hysteresis prevents


def test_evaluation_is_deterministic_and_duplicates_change_nothing() -> None:
    windows = [window(i, r) for i, r in enumerate(HOVERING)]
    first = run(AlertBook([ERRORS]), windows)
    doubled = [w for w in windows for _ in range(2)]
    again = run(AlertBook([ERRORS]), doubled)
    assert [e.model_dump() for e in again] == [e.model_dump() for e in first]


def test_a_restored_firing_alert_resolves_under_its_own_id() -> None:
    windows = [window(i, r) for i, r in enumerate(HOVERING)]
    full = run(AlertBook([ERRORS]), windows)
    raised = full[0]
    assert isinstance(raised, AlertRaised)
    # restart after minute 8 with only the later windows: the alert comes from the log
    book = AlertBook([ERRORS])
    book.seed(raised)
    rest = run(book, windows[9:])
    assert [e.model_dump() for e in rest] == [full[1].model_dump()]


def test_windows_with_too_few_calls_give_no_reading() -> None:
    quiet = window(0, 1.0, calls=3, successes=0, failures=3)
    assert window_value(ERRORS, quiet) is None
    assert AlertBook([ERRORS.model_copy(update={"for_s": 0})]).apply_window(quiet) == []


def test_availability_fires_below_and_other_services_are_separate() -> None:
    rule = AlertRule(
        name="LowAvailability", kind=AlertKind.AVAILABILITY, raise_at=0.9, resolve_at=0.95
    )
    book = AlertBook([rule])
    events = run(book, [window(0, 0.2, "a"), window(0, 0.0, "b"), window(1, 0.07, "a")])
    assert [(type(e).__name__, e.service) for e in events] == [("AlertRaised", "a")]
    assert run(book, [window(2, 0.04, "a")])[0].alert_id == events[0].alert_id


def test_a_rule_for_one_service_ignores_the_others() -> None:
    rule = ERRORS.model_copy(update={"service": "search", "for_s": 0})
    book = AlertBook([rule])
    assert run(book, [window(0, 0.5, "other")]) == []
    assert len(run(book, [window(0, 0.5, "search")])) == 1


def test_latency_cost_and_dead_letter_readings() -> None:
    w = window(0, 0.0, latency_p95_ms=812.0, cost_usd=0.5, dead_lettered=3)
    reading = {
        kind: window_value(AlertRule(name="r", kind=kind, raise_at=1), w)
        for kind in (AlertKind.LATENCY_P95, AlertKind.COST_PER_HOUR, AlertKind.DEAD_LETTERS)
    }
    assert reading == {
        AlertKind.LATENCY_P95: 812.0,
        AlertKind.COST_PER_HOUR: pytest.approx(30.0),  # 0.5 USD in one minute
        AlertKind.DEAD_LETTERS: pytest.approx(3.0),
    }


def _circuit(minute: int, current: CircuitState, previous: CircuitState) -> CircuitStateChanged:
    return CircuitStateChanged(
        service="search",
        previous=previous,
        current=current,
        occurred_at=T0 + timedelta(minutes=minute, seconds=30),
    )


def test_circuit_open_longer_than_t() -> None:
    rule = AlertRule(name="CircuitOpen", kind=AlertKind.CIRCUIT_OPEN, raise_at=160, resolve_at=1)
    book = AlertBook([rule])
    assert book.apply_circuit(_circuit(0, CircuitState.OPEN, CircuitState.CLOSED)) == []
    assert run(book, [window(1, 0.0), window(2, 0.0)]) == []  # open 90 s, then 150 s: under 160
    [raised] = run(book, [window(3, 0.0)])  # 210 s
    assert isinstance(raised, AlertRaised)
    assert raised.value == pytest.approx(210)
    assert book.apply_circuit(_circuit(4, CircuitState.HALF_OPEN, CircuitState.OPEN)) == []
    [resolved] = book.apply_circuit(_circuit(4, CircuitState.CLOSED, CircuitState.HALF_OPEN))
    assert isinstance(resolved, AlertResolved)
    assert resolved.alert_id == raised.alert_id


def test_consumer_lag_readings() -> None:
    rule = AlertRule(name="Lag", kind=AlertKind.CONSUMER_LAG, raise_at=100, resolve_at=10, for_s=60)
    book = AlertBook([rule])
    assert book.apply_lag("g", T0, 500) == []
    [raised] = book.apply_lag("g", T0 + timedelta(seconds=60), 400)
    assert isinstance(raised, AlertRaised)
    assert raised.service is None
    assert raised.labels["subject"] == "g"
    assert book.apply_lag("g", T0 + timedelta(seconds=90), 50) == []  # between: still firing
    [resolved] = book.apply_lag("g", T0 + timedelta(seconds=120), 5)
    assert resolved.alert_id == raised.alert_id


def test_hysteresis_must_point_back() -> None:
    with pytest.raises(ValidationError, match="resolve_at"):
        AlertRule(name="x", kind=AlertKind.ERROR_RATE, raise_at=0.1, resolve_at=0.2)
    with pytest.raises(ValidationError, match="resolve_at"):
        AlertRule(name="x", kind=AlertKind.AVAILABILITY, raise_at=0.9, resolve_at=0.8)


def test_the_alert_log_folds_raises_and_resolutions_once() -> None:
    events = run(AlertBook([ERRORS]), [window(i, r) for i, r in enumerate(HOVERING)])
    log = AlertLog()
    for event in [events[1], *events, *events]:  # a resolution first, and everything twice
        log.apply(event)
    [record] = log.sorted()
    assert not record.firing
    assert log.firing() == []
    assert [r.raised.alert_id for r in log.firing_at(T0 + timedelta(minutes=10))] == [
        events[0].alert_id
    ]


@pytest.mark.parametrize("restart_after", range(len(HOVERING)))
def test_a_restart_at_any_window_rebuilds_the_same_events(restart_after: int) -> None:
    """The evaluator restarts with ``live_from`` after some window: it seeds what the log says
    was firing then, warms up on the earlier windows and derives the rest exactly as before."""
    windows = [window(i, r) for i, r in enumerate(HOVERING)]
    full = run(AlertBook([ERRORS]), windows)
    live_from = windows[restart_after].window_end
    log = AlertLog()
    for event in full:
        if event.occurred_at <= live_from:
            log.apply(event)
    book = AlertBook([ERRORS], live_from=live_from)
    for record in log.firing_at(live_from):
        book.seed(record.raised)
    again = run(book, windows)
    written = [e for e in full if e.occurred_at > live_from]
    assert [e.model_dump() for e in again] == [e.model_dump() for e in written]


def test_a_pending_breach_survives_a_restart_with_the_same_alert_id() -> None:
    windows = [window(i, r) for i, r in enumerate([0.2, 0.2, 0.2, 0.0])]
    [raised, _] = run(AlertBook([ERRORS]), windows)  # pending from minute 0, raised at minute 2
    book = AlertBook([ERRORS], live_from=windows[0].window_end)  # restart while pending
    [again, _] = run(book, windows)
    assert again.event_id == raised.event_id


def test_records_of_one_window_add_up_before_it_is_evaluated() -> None:
    rule = ERRORS.model_copy(update={"for_s": 0})
    book = AlertBook([rule], settle=timedelta(minutes=1))
    # minute 0 comes from two source partitions: 2/100 and 38/100 failed = 0.2 together
    assert book.apply_window(window(0, 0.02)) == []
    assert book.apply_window(window(1, 0.0)) == []  # minute 1 from the first partition
    assert book.apply_window(window(0, 0.38)) == []  # still within the settle time
    [raised] = book.apply_window(window(2, 0.0))  # minute 0 is settled: evaluated merged
    assert isinstance(raised, AlertRaised)
    assert raised.value == pytest.approx(0.2)
    assert book.apply_window(window(0, 0.9)) == []  # too late: counted, changes nothing
    assert book.late == 1


def test_latency_p95_merges_sketches() -> None:
    from streams.rollup import sketch_record
    from streams.sketch import Sketch

    rule = AlertRule(name="Slow", kind=AlertKind.LATENCY_P95, raise_at=900)
    fast = window(0, 0.0, latency_sketch=sketch_record(Sketch.of([100.0] * 90)))
    slow = window(0, 0.0, latency_sketch=sketch_record(Sketch.of([1000.0] * 10)))
    [raised] = run(AlertBook([rule]), [fast, slow])  # p95 of the 100 attempts is ~1000 ms
    assert isinstance(raised, AlertRaised)
    assert raised.value == pytest.approx(1000, rel=0.02)
