"""Sketches and roll-ups: quantiles within the stated error, merges equal one big sketch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from ddsketch import DDSketch

from streams.errors import ConfigurationError
from streams.events.monitoring import MetricsWindow
from streams.rollup import parse_span, rollup, sketch_of, sketch_record, total
from streams.sketch import RELATIVE_ACCURACY, Sketch

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def exact(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


def test_quantiles_are_within_the_relative_accuracy_and_agree_with_ddsketch() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.2) for _ in range(20_000)]
    ours = Sketch.of(values)
    theirs = DDSketch(RELATIVE_ACCURACY)
    for v in values:
        theirs.add(v)
    for q in (0.5, 0.95, 0.99):
        got = ours.quantile(q)
        assert got is not None
        assert abs(got - exact(values, q)) <= RELATIVE_ACCURACY * exact(values, q) + 1e-9
        assert got == pytest.approx(theirs.get_quantile_value(q))


def test_merged_sketches_equal_one_sketch_of_everything() -> None:
    rng = random.Random(1)
    parts = [[rng.uniform(0, 500) for _ in range(300)] for _ in range(5)]
    merged = Sketch()
    for part in parts:
        merged.merge(sketch_of(sketch_record(Sketch.of(part))))
    whole = Sketch.of([v for part in parts for v in part])
    assert merged.bins == whole.bins
    assert merged.count == whole.count
    assert merged.quantile(0.95) == whole.quantile(0.95)


def window(service: str, minute: int, latencies: list[float], failures: int = 0) -> MetricsWindow:
    calls = len(latencies)
    return MetricsWindow(
        service=service,
        window_start=T0 + timedelta(minutes=minute),
        window_end=T0 + timedelta(minutes=minute + 1),
        calls=calls,
        successes=calls - failures,
        failures=failures,
        failures_by_error_class={"Timeout": failures} if failures else {},
        throughput_per_second=calls / 60,
        error_rate=failures / calls if calls else 0.0,
        cost_usd=0.5 * calls,
        cost_by_model={"m": 0.5 * calls},
        latency_sketch=sketch_record(Sketch.of(latencies)),
        health_checks=2,
        health_checks_up=1 if minute == 0 else 2,
    )


def test_rollup_adds_counts_merges_sketches_and_recomputes_rates() -> None:
    a0, a1 = [10.0, 20.0, 30.0], [40.0, 50.0]
    windows = [
        window("a", 0, a0, failures=1),
        window("a", 1, a1),
        window("a", 1, [60.0]),  # another partition's part of the same minute
        window("b", 0, [5.0]),
        window("a", 9, [1.0]),  # outside the span asked for
    ]
    figures = rollup(windows, T0, T0 + timedelta(minutes=5))
    a = figures["a"]
    assert (a.calls, a.successes, a.failures, a.windows) == (6, 5, 1, 3)
    assert a.failures_by_error_class == {"Timeout": 1}
    assert a.error_rate == pytest.approx(1 / 6)
    assert a.throughput_per_second == pytest.approx(6 / 300)
    assert a.cost_by_model == {"m": 3.0}
    assert a.availability == pytest.approx(5 / 6)
    assert a.sketch.quantile(0.5) == Sketch.of(a0 + a1 + [60.0]).quantile(0.5)
    body = a.to_json()
    assert body["latency_ms"]["mean"] == pytest.approx(35.0)
    everything = total(figures.values())
    assert everything is not None
    assert everything.calls == 7


def test_unknown_span_names_the_choices() -> None:
    assert parse_span("1h") == timedelta(hours=1)
    with pytest.raises(ConfigurationError, match="5m"):
        parse_span("7m")
