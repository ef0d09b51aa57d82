"""Monitoring events: integration metrics per service and window, and alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event, Record
from streams.events.health import CircuitState


class LatencySketch(Record):
    """A DDSketch of attempt latencies (ms): merge the bins of several windows for their quantiles.

    Bin ``k`` holds the values in ``(gamma^(k-1), gamma^k]`` with
    ``gamma = (1 + relative_accuracy) / (1 - relative_accuracy)``; a quantile read from the merged
    bins is within ``relative_accuracy`` of the true one (``streams.sketch.Sketch``).
    """

    relative_accuracy: float = Field(description="Relative error bound of quantiles (0.01 = 1 %).")
    bins: dict[str, float] = Field(
        default_factory=dict, description="Bin index (as text) -> number of values in it."
    )
    zero_count: float = Field(default=0.0, description="Values too small for a bin (about 0 ms).")
    count: float = Field(description="Number of values.")
    sum_ms: float = Field(description="Exact sum of the values (for the mean).")
    min_ms: float | None = Field(default=None, description="Exact smallest value.")
    max_ms: float | None = Field(default=None, description="Exact largest value.")


class MetricsWindow(Event):
    """Integration metrics of one service over one time window.

    Several records may cover the same service and window (one per source partition, and a
    correction for records that arrived after the window closed): figures of the same window
    add up, and sketches merge (``streams.rollup``).
    """

    event_type: ClassVar[str] = "monitoring.metrics_window"
    key_field: ClassVar[str] = "service"

    service: str = Field(description="External service the metrics are about.")
    window_start: datetime = Field(description="Start of the window, inclusive (UTC).")
    window_end: datetime = Field(description="End of the window, exclusive (UTC).")
    calls: int = Field(description="Call attempts finished in the window.")
    successes: int = Field(description="Attempts that succeeded.")
    failures: int = Field(description="Attempts that failed.")
    retries_scheduled: int = Field(default=0, description="Retries scheduled.")
    dead_lettered: int = Field(default=0, description="Calls dead-lettered.")
    latency_p50_ms: float | None = Field(default=None, description="Median attempt latency.")
    latency_p95_ms: float | None = Field(default=None, description="95th percentile latency.")
    latency_p99_ms: float | None = Field(default=None, description="99th percentile latency.")
    throughput_per_second: float = Field(description="Attempts per second over the window.")
    error_rate: float = Field(description="failures / calls, 0 when there were no calls.")
    cost_usd: float = Field(default=0.0, description="Cost of the attempts in US dollars.")
    tokens_prompt: int = Field(default=0, description="Prompt tokens billed.")
    tokens_completion: int = Field(default=0, description="Completion tokens billed.")
    failures_by_error_class: dict[str, int] = Field(
        default_factory=dict, description="Failed attempts per error class (e.g. `Timeout`)."
    )
    expired: int = Field(default=0, description="Calls whose deadline passed.")
    latency_sketch: LatencySketch | None = Field(
        default=None, description="Mergeable sketch of attempt latencies; None without any."
    )
    latency_mean_ms: float | None = Field(default=None, description="Mean attempt latency.")
    cost_by_model: dict[str, float] = Field(
        default_factory=dict,
        description="Cost in US dollars per model, where the response named it.",
    )
    successes_by_model: dict[str, int] = Field(
        default_factory=dict, description="Successful attempts per model, where known."
    )
    health_checks: int = Field(default=0, description="Health checks finished in the window.")
    health_checks_up: int = Field(
        default=0, description="Health checks that found the service healthy or degraded."
    )
    availability: float | None = Field(
        default=None, description="health_checks_up / health_checks; None without checks."
    )
    circuit_state: CircuitState | None = Field(
        default=None, description="Circuit breaker state at the end of the window, if known."
    )
    circuit_opened: int = Field(default=0, description="Times the circuit opened in the window.")
    circuit_open_seconds: float = Field(
        default=0.0, description="Seconds of the window the circuit spent open (where known)."
    )
    source_partition: int | None = Field(
        default=None, description="Source partition (projection task) these figures come from."
    )


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertRaised(Event):
    """An alert rule fired."""

    event_type: ClassVar[str] = "monitoring.alert_raised"
    key_field: ClassVar[str] = "alert_id"

    alert_id: str = Field(description="Id of the alert; its resolution carries the same id.")
    rule: str = Field(description="Name of the rule that fired.")
    severity: Severity = Field(description="How urgent it is.")
    service: str | None = Field(default=None, description="Service concerned, if any.")
    summary: str = Field(description="One line for the person on call.")
    value: float | None = Field(default=None, description="Observed value that fired the rule.")
    threshold: float | None = Field(default=None, description="Threshold the value crossed.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels for routing.")


class AlertResolved(Event):
    """A raised alert is no longer firing."""

    event_type: ClassVar[str] = "monitoring.alert_resolved"
    key_field: ClassVar[str] = "alert_id"

    alert_id: str = Field(description="Id of the alert that was raised.")
    rule: str = Field(description="Name of the rule.")
    service: str | None = Field(default=None, description="Service concerned, if any.")
    summary: str = Field(default="", description="Why it is resolved.")
    raised_at: datetime | None = Field(default=None, description="When it was raised (UTC).")
