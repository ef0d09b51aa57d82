"""``GET /metrics``: the view's figures in the Prometheus text format (prometheus-client).

Counters are totals since the gateway started reading (one day back); the latency histogram's
buckets are read from the merged DDSketch (each bucket count within the sketch's 1 % error).
Gauges describe the last 5 minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from connectors.metrics_api._view import MetricsView
from streams.events.health import CircuitState
from streams.sketch import Sketch

#: Upper bounds of the latency histogram, in seconds.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECENT = timedelta(minutes=5)


def buckets(sketch: Sketch) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs from a sketch of milliseconds."""
    out = [(repr(bound), sketch.count_at_most(bound * 1000)) for bound in BUCKETS_S]
    out.append(("+Inf", sketch.count))
    return out


class IntegrationCollector(Collector):
    def __init__(self, view: MetricsView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        totals = self._view.totals
        calls = CounterMetricFamily(
            "backbone_integration_calls",
            "Call attempts finished, by service and outcome.",
            labels=["service", "outcome"],
        )
        failures = CounterMetricFamily(
            "backbone_integration_failures",
            "Failed call attempts by service and error class.",
            labels=["service", "error_class"],
        )
        retries = CounterMetricFamily(
            "backbone_integration_retries", "Retries scheduled.", labels=["service"]
        )
        dead = CounterMetricFamily(
            "backbone_integration_dead_letters", "Calls dead-lettered.", labels=["service"]
        )
        expired = CounterMetricFamily(
            "backbone_integration_expired", "Calls whose deadline passed.", labels=["service"]
        )
        cost = CounterMetricFamily(
            "backbone_integration_cost_usd",
            "Cost of successful attempts in US dollars (model `unknown` when not named).",
            labels=["service", "model"],
        )
        tokens = CounterMetricFamily(
            "backbone_integration_tokens", "Tokens billed.", labels=["service", "kind"]
        )
        opened = CounterMetricFamily(
            "backbone_integration_circuit_opened", "Times the circuit opened.", labels=["service"]
        )
        open_s = CounterMetricFamily(
            "backbone_integration_circuit_open_seconds",
            "Seconds the circuit spent open.",
            labels=["service"],
        )
        latency = HistogramMetricFamily(
            "backbone_integration_call_duration_seconds",
            "Duration of call attempts (buckets from a DDSketch, 1 % relative error).",
            labels=["service"],
        )
        for service, f in totals.items():
            calls.add_metric([service, "success"], f.successes)
            calls.add_metric([service, "failure"], f.failures)
            for error_class, n in sorted(f.failures_by_error_class.items()):
                failures.add_metric([service, error_class], n)
            retries.add_metric([service], f.retries_scheduled)
            dead.add_metric([service], f.dead_lettered)
            expired.add_metric([service], f.expired)
            named = sum(f.cost_by_model.values())
            for model, usd in sorted(f.cost_by_model.items()):
                cost.add_metric([service, model], usd)
            cost.add_metric([service, "unknown"], max(0.0, f.cost_usd - named))
            tokens.add_metric([service, "prompt"], f.tokens_prompt)
            tokens.add_metric([service, "completion"], f.tokens_completion)
            opened.add_metric([service], f.circuit_opened)
            open_s.add_metric([service], f.circuit_open_seconds)
            latency.add_metric([service], buckets(f.sketch), f.sketch.total / 1000)
        yield from (calls, failures, retries, dead, expired, cost, tokens, opened, open_s, latency)
        yield from self._recent()

    def _recent(self) -> Iterator[Metric]:
        _, _, recent = self._view.figures(RECENT)
        error = GaugeMetricFamily(
            "backbone_integration_error_ratio",
            "Failed / finished attempts over the last 5 minutes.",
            labels=["service"],
        )
        availability = GaugeMetricFamily(
            "backbone_integration_availability_ratio",
            "Health checks that found the service up, over the last 5 minutes.",
            labels=["service"],
        )
        quantiles = GaugeMetricFamily(
            "backbone_integration_latency_seconds",
            "Attempt latency percentiles over the last 5 minutes (DDSketch, 1 % relative error); "
            "a gauge, not a summary: promtool reserves the `quantile` label for summaries.",
            labels=["service", "percentile"],
        )
        circuit = GaugeMetricFamily(
            "backbone_integration_circuit_open",
            "1 when the service's circuit was open at the end of the latest window.",
            labels=["service"],
        )
        for service, f in recent.items():
            error.add_metric([service], f.error_rate)
            if f.availability is not None:
                availability.add_metric([service], f.availability)
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                value = f.latency_ms(q)
                if value is not None:
                    quantiles.add_metric([service, name], value / 1000)
            if f.circuit_state is not None:
                circuit.add_metric([service], float(f.circuit_state is CircuitState.OPEN))
        fresh = GaugeMetricFamily(
            "backbone_metrics_window_age_seconds",
            "Seconds since the end of the latest metrics window the gateway has seen.",
        )
        age = self._view.freshness()["age_seconds"]
        if isinstance(age, float):
            fresh.add_metric([], age)
        yield from (error, availability, quantiles, circuit, fresh)
