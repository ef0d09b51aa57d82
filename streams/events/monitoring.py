"""Monitoring events: integration metrics per service and window, and alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event


class MetricsWindow(Event):
    """Integration metrics of one service over one time window."""

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
