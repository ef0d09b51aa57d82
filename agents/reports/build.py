"""A performance report as plain data: figures, trends, cost, series and recommendations.

Figures come from the ``MetricsWindow`` records through the same roll-up the gateway serves
(``streams.rollup``): counts add up, latency sketches merge. ``build_report`` is pure, so the
same inputs always give the same report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from agents.reports._read import ReportInputs
from streams.events.calls import CallDeadLettered
from streams.events.monitoring import MetricsWindow
from streams.rollup import IntegrationFigures, rollup, total

#: Recommendation thresholds (documented in docs/monitoring.md).
NEAR_RATE_LIMIT = 0.8  # peak per-window rate / configured limit
BREAKER_OPENINGS = 3  # openings in the period
RETRY_FAILURES_BEYOND = 5  # failed attempts after the last attempt number that ever succeeded
COSTLIER_MODEL = 1.5  # cost per success of the costliest model / the cheapest one
_CHART_POINTS = 48


def _summary(f: IntegrationFigures | None, dead_letters: int) -> dict[str, Any]:
    if f is None:
        return {
            "requests": 0,
            "successes": 0,
            "failures": 0,
            "error_rate": None,
            "availability": None,
            "latency_mean_ms": None,
            "latency_p95_ms": None,
            "cost_usd": 0.0,
            "retries": 0,
            "dead_letters": dead_letters,
        }
    availability = f.availability
    if availability is None and f.calls:
        availability = f.successes / f.calls  # no health checks: the share of successful attempts
    return {
        "requests": f.calls,
        "successes": f.successes,
        "failures": f.failures,
        "error_rate": f.error_rate if f.calls else None,
        "availability": availability,
        "latency_mean_ms": f.sketch.mean,
        "latency_p95_ms": f.latency_ms(0.95),
        "cost_usd": f.cost_usd,
        "retries": f.retries_scheduled,
        "dead_letters": dead_letters,
    }


def _trend(current: Any, previous: Any) -> dict[str, Any]:
    change = None if current is None or previous is None else current - previous
    pct = None if change is None or not previous else 100.0 * change / previous
    return {"current": current, "previous": previous, "change": change, "change_pct": pct}


def _series(windows: list[MetricsWindow], since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Requests, errors and p95 per bucket (about 48 buckets of whole minutes)."""
    minutes = max(1, int((until - since).total_seconds() // 60 // _CHART_POINTS))
    step = timedelta(minutes=minutes)
    buckets: dict[datetime, list[MetricsWindow]] = {}
    for w in windows:
        index = int((w.window_start - since) / step)
        buckets.setdefault(since + index * step, []).append(w)
    out = []
    for start in sorted(buckets):
        merged = total(rollup(buckets[start]).values())
        assert merged is not None
        out.append(
            {
                "start": start.isoformat(),
                "requests": merged.calls,
                "failures": merged.failures,
                "latency_p95_ms": merged.latency_ms(0.95),
                "cost_usd": merged.cost_usd,
            }
        )
    return out


def _peak_rate(windows: Iterable[MetricsWindow]) -> dict[str, float]:
    """Per service, the highest attempts per second over one window (records of a window merged)."""
    per_window: Counter[tuple[str, datetime, datetime]] = Counter()
    for w in windows:
        per_window[(w.service, w.window_start, w.window_end)] += w.calls
    peak: dict[str, float] = {}
    for (service, start, end), calls in per_window.items():
        rate = calls / max((end - start).total_seconds(), 1e-9)
        peak[service] = max(peak.get(service, 0.0), rate)
    return peak


def _recommendations(
    current: Mapping[str, IntegrationFigures],
    windows: list[MetricsWindow],
    dead_now: list[CallDeadLettered],
    dead_before: list[CallDeadLettered],
    attempts: Mapping[str, Counter[tuple[str, int]]],
    rate_limits: Mapping[str, float],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for service, peak in sorted(_peak_rate(windows).items()):
        limit = rate_limits.get(service)
        if limit and peak >= NEAR_RATE_LIMIT * limit:
            out.append(
                {
                    "kind": "near_rate_limit",
                    "service": service,
                    "message": f"{service} peaked at {peak:.2f} calls/s, {100 * peak / limit:.0f}% "
                    f"of its {limit:g}/s limit: raise the limit with the provider, or spread "
                    "low-priority calls over time.",
                    "evidence": {"peak_per_second": peak, "limit_per_second": limit},
                }
            )
    for service, f in current.items():
        if f.circuit_opened >= BREAKER_OPENINGS:
            out.append(
                {
                    "kind": "breaker_flapping",
                    "service": service,
                    "message": f"{service}'s circuit breaker opened {f.circuit_opened} times "
                    f"({f.circuit_open_seconds:.0f} s open): look at the service's health, or "
                    "lengthen the breaker's open time.",
                    "evidence": {
                        "openings": f.circuit_opened,
                        "open_seconds": f.circuit_open_seconds,
                    },
                }
            )
    for service, counts in sorted(attempts.items()):
        succeeded = [a for (outcome, a), n in counts.items() if outcome == "succeeded" and n]
        last_ok = max(succeeded, default=-1)
        beyond = sum(n for (outcome, a), n in counts.items() if outcome == "failed" and a > last_ok)
        if last_ok >= 0 and beyond >= RETRY_FAILURES_BEYOND:
            out.append(
                {
                    "kind": "retries_never_succeed",
                    "service": service,
                    "message": f"{service}: no call succeeded after attempt {last_ok}, yet "
                    f"{beyond} later attempts failed: cap max_attempts at {last_ok + 1} "
                    "(attempt numbers start at 0) or lengthen the retry delays.",
                    "evidence": {"last_successful_attempt": last_ok, "failed_beyond": beyond},
                }
            )
    per_success: dict[str, float] = {}
    for f in current.values():
        for model, cost in f.cost_by_model.items():
            successes = f.successes_by_model.get(model, 0)
            if successes:
                per_success[model] = per_success.get(model, 0.0) + cost / successes
    model, cost = max(per_success.items(), key=lambda kv: kv[1], default=("", 0.0))
    cheapest = min(per_success.values(), default=0.0)
    if len(per_success) >= 2 and cheapest > 0 and cost >= COSTLIER_MODEL * cheapest:
        out.append(
            {
                "kind": "costliest_model",
                "service": None,
                "message": f"{model} costs the most per successful call ({cost:.4f} USD, "
                f"{cost / cheapest:.1f}x the cheapest): route calls that do not need it elsewhere.",
                "evidence": {"model": model, "usd_per_success": per_success},
            }
        )
    now, before = Counter(d.service for d in dead_now), Counter(d.service for d in dead_before)
    for service in sorted(now):
        if now[service] > before.get(service, 0):
            reasons = Counter(d.failure.error_class for d in dead_now if d.service == service)
            top = ", ".join(f"{k} ({n})" for k, n in reasons.most_common(3))
            out.append(
                {
                    "kind": "dead_letters_growing",
                    "service": service,
                    "message": f"{service}: {now[service]} calls dead-lettered, up from "
                    f"{before.get(service, 0)} in the previous period (mostly {top}): fix the "
                    "cause, then re-drive them with `backbone dlq`.",
                    "evidence": {"current": now[service], "previous": before.get(service, 0)},
                }
            )
    return out


def build_report(
    inputs: ReportInputs,
    since: datetime,
    until: datetime,
    *,
    service: str | None = None,
    rate_limits: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The report of ``[since, until)`` against ``[since - (until - since), since)``."""
    previous_since = since - (until - since)

    def chosen(w: MetricsWindow) -> bool:
        return service is None or w.service == service

    windows = [w for w in inputs.windows if chosen(w)]
    now_windows = [w for w in windows if since <= w.window_start and w.window_end <= until]
    current = rollup(now_windows, since, until)
    previous = rollup(windows, previous_since, since)
    dead = [d for d in inputs.dead_letters if service is None or d.service == service]
    dead_now = [d for d in dead if since <= d.occurred_at < until]
    dead_before = [d for d in dead if previous_since <= d.occurred_at < since]
    totals = _summary(total(current.values()), len(dead_now))
    before = _summary(total(previous.values()), len(dead_before))
    by_model: Counter[str] = Counter()
    for f in current.values():
        by_model.update(f.cost_by_model)
    attempts = {s: c for s, c in inputs.attempts.items() if service is None or s == service}
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "previous_period": {"since": previous_since.isoformat(), "until": since.isoformat()},
        "service": service,
        "totals": totals,
        "previous_totals": before,
        "trends": {k: _trend(totals[k], before[k]) for k in totals},
        "services": [
            {
                **_summary(f, sum(1 for d in dead_now if d.service == name)),
                "service": name,
                "circuit_opened": f.circuit_opened,
                "circuit_open_seconds": f.circuit_open_seconds,
            }
            for name, f in current.items()
        ],
        "cost": {
            "total_usd": totals["cost_usd"],
            "by_service": {name: f.cost_usd for name, f in current.items()},
            "by_model": dict(sorted(by_model.items())),
        },
        "dead_letters": {
            "count": len(dead_now),
            "by_error_class": dict(Counter(d.failure.error_class for d in dead_now).most_common()),
            "by_reason": dict(Counter(d.failure.reason.value for d in dead_now).most_common()),
        },
        "series": _series(now_windows, since, until),
        "recommendations": _recommendations(
            current, now_windows, dead_now, dead_before, attempts, rate_limits or {}
        ),
    }
