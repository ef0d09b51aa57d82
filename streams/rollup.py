"""Roll-ups of ``MetricsWindow`` records: 5-minute, hourly, daily (any span) figures per service.

Counts add up, sketches merge (so p95 over an hour is the p95 of the hour's attempts, not an
average of minute p95s), rates are recomputed from the sums. Several records for one service and
minute (one per source partition, late corrections) simply add up as well. Used by the gateway's
``/v1/metrics/integrations``, ``GET /metrics`` and reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from streams.errors import ConfigurationError
from streams.events.health import CircuitState
from streams.events.monitoring import LatencySketch, MetricsWindow
from streams.sketch import Sketch

#: The spans the endpoints accept, by name.
SPANS: Mapping[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
}


def parse_span(text: str) -> timedelta:
    """``5m``, ``1h``, ``24h``... (see :data:`SPANS`)."""
    try:
        return SPANS[text]
    except KeyError:
        names = ", ".join(SPANS)
        raise ConfigurationError(f"unknown window {text!r}: use one of {names}") from None


def sketch_of(record: LatencySketch | None) -> Sketch:
    if record is None:
        return Sketch()
    return Sketch(
        bins={int(k): v for k, v in record.bins.items()},
        zero=record.zero_count,
        count=record.count,
        total=record.sum_ms,
        low=record.min_ms,
        high=record.max_ms,
        relative_accuracy=record.relative_accuracy,
    )


def sketch_record(sketch: Sketch) -> LatencySketch | None:
    if sketch.count <= 0:
        return None
    return LatencySketch(
        relative_accuracy=sketch.relative_accuracy,
        bins={str(k): v for k, v in sorted(sketch.bins.items())},
        zero_count=sketch.zero,
        count=sketch.count,
        sum_ms=sketch.total,
        min_ms=sketch.low,
        max_ms=sketch.high,
    )


def _add(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


@dataclass
class IntegrationFigures:
    """A service's figures over ``[start, end)``, merged from its windows."""

    service: str
    start: datetime
    end: datetime
    windows: int = 0
    calls: int = 0
    successes: int = 0
    failures: int = 0
    failures_by_error_class: dict[str, int] = field(default_factory=dict)
    retries_scheduled: int = 0
    dead_lettered: int = 0
    expired: int = 0
    cost_usd: float = 0.0
    cost_by_model: dict[str, float] = field(default_factory=dict)
    successes_by_model: dict[str, int] = field(default_factory=dict)
    tokens_prompt: int = 0
    tokens_completion: int = 0
    health_checks: int = 0
    health_checks_up: int = 0
    circuit_opened: int = 0
    circuit_open_seconds: float = 0.0
    circuit_state: CircuitState | None = None
    latest_window_end: datetime | None = None
    sketch: Sketch = field(default_factory=Sketch)

    def add(self, window: MetricsWindow) -> None:
        self.windows += 1
        self.calls += window.calls
        self.successes += window.successes
        self.failures += window.failures
        _add(self.failures_by_error_class, window.failures_by_error_class)
        self.retries_scheduled += window.retries_scheduled
        self.dead_lettered += window.dead_lettered
        self.expired += window.expired
        self.cost_usd += window.cost_usd
        _add(self.cost_by_model, window.cost_by_model)
        _add(self.successes_by_model, window.successes_by_model)
        self.tokens_prompt += window.tokens_prompt
        self.tokens_completion += window.tokens_completion
        self.health_checks += window.health_checks
        self.health_checks_up += window.health_checks_up
        self.circuit_opened += window.circuit_opened
        self.circuit_open_seconds += window.circuit_open_seconds
        if window.latency_sketch is not None:
            self.sketch.merge(sketch_of(window.latency_sketch))
        if self.latest_window_end is None or window.window_end >= self.latest_window_end:
            self.latest_window_end = window.window_end
            if window.circuit_state is not None:
                self.circuit_state = window.circuit_state

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 1e-9)

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def availability(self) -> float | None:
        return self.health_checks_up / self.health_checks if self.health_checks else None

    @property
    def throughput_per_second(self) -> float:
        return self.calls / self.seconds

    def latency_ms(self, quantile: float) -> float | None:
        return self.sketch.quantile(quantile)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "windows": self.windows,
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "failures_by_error_class": dict(sorted(self.failures_by_error_class.items())),
            "retries_scheduled": self.retries_scheduled,
            "dead_lettered": self.dead_lettered,
            "expired": self.expired,
            "error_rate": self.error_rate,
            "throughput_per_second": self.throughput_per_second,
            "latency_ms": {
                "p50": self.latency_ms(0.5),
                "p95": self.latency_ms(0.95),
                "p99": self.latency_ms(0.99),
                "mean": self.sketch.mean,
                "relative_error": self.sketch.relative_accuracy,
            },
            "cost_usd": self.cost_usd,
            "cost_by_model": dict(sorted(self.cost_by_model.items())),
            "successes_by_model": dict(sorted(self.successes_by_model.items())),
            "tokens": {"prompt": self.tokens_prompt, "completion": self.tokens_completion},
            "availability": self.availability,
            "health_checks": self.health_checks,
            "circuit": {
                "state": None if self.circuit_state is None else self.circuit_state.value,
                "opened": self.circuit_opened,
                "open_seconds": self.circuit_open_seconds,
            },
            "latest_window_end": (
                None if self.latest_window_end is None else self.latest_window_end.isoformat()
            ),
        }


def rollup(
    windows: Iterable[MetricsWindow],
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, IntegrationFigures]:
    """Per service, the figures of the windows lying in ``[start, end)`` (all when omitted).

    Without ``start``/``end`` the span runs from the earliest window start to the latest end.
    """
    chosen = [
        w
        for w in windows
        if (start is None or w.window_start >= start) and (end is None or w.window_end <= end)
    ]
    if not chosen:
        return {}
    lo = start or min(w.window_start for w in chosen)
    hi = end or max(w.window_end for w in chosen)
    out: dict[str, IntegrationFigures] = {}
    for window in sorted(chosen, key=lambda w: (w.window_start, w.window_end)):
        figures = out.get(window.service)
        if figures is None:
            figures = out[window.service] = IntegrationFigures(window.service, lo, hi)
        figures.add(window)
    return dict(sorted(out.items()))


def total(figures: Iterable[IntegrationFigures], service: str = "*") -> IntegrationFigures | None:
    """All services' figures merged into one (for report totals)."""
    merged: IntegrationFigures | None = None
    for one in figures:
        if merged is None:
            merged = IntegrationFigures(service, one.start, one.end)
        merged.start, merged.end = min(merged.start, one.start), max(merged.end, one.end)
        merged.windows += one.windows
        for name in (
            "calls",
            "successes",
            "failures",
            "retries_scheduled",
            "dead_lettered",
            "expired",
            "cost_usd",
            "tokens_prompt",
            "tokens_completion",
            "health_checks",
            "health_checks_up",
            "circuit_opened",
            "circuit_open_seconds",
        ):
            setattr(merged, name, getattr(merged, name) + getattr(one, name))
        _add(merged.failures_by_error_class, one.failures_by_error_class)
        _add(merged.cost_by_model, one.cost_by_model)
        _add(merged.successes_by_model, one.successes_by_model)
        merged.sketch.merge(one.sketch)
    return merged
