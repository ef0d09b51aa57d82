"""Reports as plain data: figures from the roll-up, trends, recommendations, renderings."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from agents.reports import ReportInputs, build_report, render
from streams.events.calls import CallDeadLettered, CallRequested
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.monitoring import MetricsWindow
from streams.rollup import rollup, sketch_record
from streams.sketch import Sketch

UNTIL = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=1)


def window(
    minute: int, service: str, calls: int, failures: int, latency: float, **extra: object
) -> MetricsWindow:
    start = SINCE + timedelta(minutes=minute)
    return MetricsWindow.model_validate(
        {
            "service": service,
            "window_start": start,
            "window_end": start + timedelta(minutes=1),
            "calls": calls,
            "successes": calls - failures,
            "failures": failures,
            "throughput_per_second": calls / 60,
            "error_rate": failures / calls if calls else 0.0,
            "latency_sketch": sketch_record(Sketch.of([latency] * calls)),
            **extra,
        }
    )


def dead(service: str, minute: int, error: str = "Timeout") -> CallDeadLettered:
    at = SINCE + timedelta(minutes=minute)
    request = CallRequested(
        call_id=f"c{minute}", service=service, operation="op", payload="{}", idempotency_key="k"
    )
    return CallDeadLettered(
        call_id=f"c{minute}",
        service=service,
        request=request,
        occurred_at=at,
        failure=DeadLetterEnvelope(
            reason=DeadLetterReason.EXHAUSTED,
            original_topic="calls.retry.3",
            original_partition=0,
            original_offset=1,
            error_class=error,
            message="m",
            attempts=4,
            first_failure_at=at,
            last_failure_at=at,
            service=service,
        ),
    )


def inputs() -> ReportInputs:
    windows = [
        # previous hour: quieter, no errors
        *(window(m - 60, "llm", 10, 0, 200.0) for m in range(0, 60, 10)),
        # this hour
        *(
            window(
                m,
                "llm",
                20,
                2,
                400.0,
                cost_usd=0.2,
                cost_by_model={"big": 0.15, "small": 0.05},
                successes_by_model={"big": 3, "small": 15},
            )
            for m in range(0, 60, 10)
        ),
        window(5, "search", 600, 0, 50.0, circuit_opened=2),
        window(6, "search", 30, 30, 50.0, circuit_opened=2, circuit_open_seconds=40.0),
    ]
    attempts = {"search": Counter({("succeeded", 0): 600, ("succeeded", 1): 3, ("failed", 2): 9})}
    return ReportInputs(
        windows=windows,
        dead_letters=[dead("llm", -30), dead("llm", 10), dead("llm", 20, "Boom")],
        attempts=attempts,
    )


def test_figures_equal_the_rollup_of_the_windows() -> None:
    data = inputs()
    report = build_report(data, SINCE, UNTIL)
    figures = rollup([w for w in data.windows if w.window_start >= SINCE], SINCE, UNTIL)
    totals = report["totals"]
    assert totals["requests"] == sum(f.calls for f in figures.values()) == 6 * 20 + 630
    assert totals["failures"] == 12 + 30
    assert totals["error_rate"] == pytest.approx(42 / 750)
    assert totals["cost_usd"] == pytest.approx(1.2)
    assert totals["latency_p95_ms"] == pytest.approx(400, rel=0.01)  # merged sketch, not averaged
    assert totals["dead_letters"] == 2
    assert report["cost"]["by_model"] == pytest.approx({"big": 0.9, "small": 0.3})
    assert [s["service"] for s in report["services"]] == ["llm", "search"]
    trend = report["trends"]["requests"]
    assert (trend["current"], trend["previous"]) == (750, 60)
    assert trend["change_pct"] == pytest.approx(1150.0)


def test_recommendations_come_from_the_data() -> None:
    report = build_report(inputs(), SINCE, UNTIL, rate_limits={"search": 11.0, "llm": 100.0})
    kinds = {(r["kind"], r["service"]) for r in report["recommendations"]}
    assert kinds == {
        ("near_rate_limit", "search"),  # 600 in one minute = 10/s of 11/s
        ("breaker_flapping", "search"),  # opened 4 times
        ("retries_never_succeed", "search"),  # nothing after attempt 1, 9 failures beyond
        ("costliest_model", None),  # big: 0.15/3 per success vs small 0.05/15
        ("dead_letters_growing", "llm"),  # 2 now, 1 before
    }
    costly = next(r for r in report["recommendations"] if r["kind"] == "costliest_model")
    assert costly["evidence"]["model"] == "big"


def test_one_service_only() -> None:
    report = build_report(inputs(), SINCE, UNTIL, service="search")
    assert [s["service"] for s in report["services"]] == ["search"]
    assert report["totals"]["requests"] == 630
    assert report["dead_letters"]["count"] == 0


def test_renderings() -> None:
    report = build_report(inputs(), SINCE, UNTIL, rate_limits={"search": 11.0})
    text = render(report, "text")
    assert "total requests" in text
    assert "cap max_attempts at 2" in text
    assert json.loads(render(report, "json")) == json.loads(json.dumps(report))
    page = render(report, "html")
    assert page.count("<svg") == 3
    # nothing is loaded from elsewhere (pygal's CDN scripts are left out): readable offline
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) is None


def test_an_empty_period_still_renders() -> None:
    report = build_report(ReportInputs(), SINCE, UNTIL)
    assert report["totals"]["requests"] == 0
    for fmt in ("text", "json", "html"):
        assert render(report, fmt)
