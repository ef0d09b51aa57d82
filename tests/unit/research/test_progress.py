"""Research progress as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.research import add_tallies, apply_call, apply_research, progress_percent, view
from streams.events.calls import CallFailed, CallSucceeded
from streams.events.research import (
    ResearchCompleted,
    ResearchOutcome,
    ResearchProgressReported,
    ResearchStarted,
    ResearchStepCompleted,
    ResearchStepStarted,
)

T0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


def _ok(n: int, correlation: str | None = "r") -> CallSucceeded:
    return CallSucceeded(
        call_id=f"c{n}",
        service="llm",
        operation="chat",
        status=200,
        latency_ms=10.0,
        cost_usd=0.25,
        tokens_prompt=3,
        attempt=0,
        idempotency_key=f"k{n}",
        correlation_id=correlation,
        occurred_at=T0 + timedelta(seconds=n),
    )


def test_a_run_folds_into_status_steps_and_progress() -> None:
    run = None
    for event in (
        ResearchStarted(research_id="r", question="q", requested_by="me", occurred_at=T0),
        ResearchStepStarted(research_id="r", step_id="a", step_kind="search"),
        ResearchStepCompleted(research_id="r", step_id="a", step_kind="search", duration_ms=5),
        ResearchStepStarted(research_id="r", step_id="b", step_kind="fetch"),
    ):
        run = apply_research(run, event)
    assert run is not None
    assert run["status"] == "running"
    assert progress_percent(run) is None  # no plan, no report: unknown
    run = apply_research(
        run, ResearchProgressReported(research_id="r", percent=30, steps_completed=1)
    )
    assert run is not None
    assert progress_percent(run) == 30
    run = apply_research(
        run,
        ResearchProgressReported(research_id="r", percent=20, steps_completed=1, steps_total=4),
    )
    assert run is not None
    assert progress_percent(run) == 20  # what the engine reports wins
    # without a reported percent, steps that ended out of the planned total: 1 of 4
    assert progress_percent({**run, "reported_percent": None}) == 25.0
    done = apply_research(
        run, ResearchCompleted(research_id="r", outcome=ResearchOutcome.SUCCEEDED, duration_ms=9)
    )
    assert done is not None
    assert (done["status"], progress_percent(done)) == ("succeeded", 100.0)
    shown = view(done, [])
    assert (shown["steps"]["total"], shown["steps"]["succeeded"], shown["steps"]["running"]) == (
        2,
        1,
        1,
    )


def test_call_tallies_add_up_across_tasks() -> None:
    one = apply_call(None, _ok(1))
    one = apply_call(one, _ok(2))
    other = apply_call(
        None,
        CallFailed(
            call_id="c3",
            service="llm",
            operation="chat",
            error_class="Boom",
            message="m",
            retriable=False,
            attempt=0,
            idempotency_key="k3",
            correlation_id="r",
            occurred_at=T0,
        ),
    )
    assert one is not None
    assert other is not None
    total = add_tallies([one, other])
    assert (total["attempts"], total["succeeded"], total["failed"]) == (3, 2, 1)
    assert total["cost_usd"] == 0.5
    assert (total["first_at"], total["last_at"]) == (
        T0.isoformat(),
        (T0 + timedelta(seconds=2)).isoformat(),
    )


def test_uncorrelated_calls_and_other_events_change_nothing() -> None:
    assert apply_call(None, _ok(1, correlation=None)) is None
    assert apply_research(None, _ok(1)) is None
