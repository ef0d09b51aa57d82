"""Research progress as plain functions: a run's events and its calls' outcomes folded into JSON.

Two kinds of state rows, both plain JSON so they travel in a projection's changelog:

- ``run/<research_id>``: the run itself, from ``research.events`` (one partition per run, in order);
- ``calls/<correlation_id>``: the outcomes of the calls that carry the run's id as their
  ``correlation_id``, from ``calls.results``. Calls are keyed by ``call_id``, so one run's calls
  spread over every partition: each task holds a partial tally and :func:`view` adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.events import Event
from streams.events.calls import (
    CallDeadLettered,
    CallExpired,
    CallFailed,
    CallRetryScheduled,
    CallSucceeded,
)
from streams.events.research import (
    ResearchCompleted,
    ResearchProgressReported,
    ResearchStarted,
    ResearchStepCompleted,
    ResearchStepFailed,
    ResearchStepStarted,
)

Run = dict[str, Any]
Tally = dict[str, Any]

RUN_PREFIX = "run/"
CALLS_PREFIX = "calls/"
STATUSES = ("running", "succeeded", "failed", "cancelled")
_COUNTS = ("attempts", "succeeded", "failed", "retries", "dead_lettered", "expired")
_SUMS = ("cost_usd", "tokens_prompt", "tokens_completion", "latency_ms")


def new_run(research_id: str) -> Run:
    return {
        "research_id": research_id,
        "status": "running",
        "question": None,
        "requested_by": None,
        "parameters": {},
        "started_at": None,
        "ended_at": None,
        "duration_ms": None,
        "summary": "",
        "reported_percent": None,
        "steps_total": None,
        "message": "",
        "updated_at": None,
        "steps": {},
    }


def apply_research(run: Run | None, event: Event) -> Run | None:
    """The run after ``event`` (a new dict), or None when the event is not a research event."""
    research_id = getattr(event, "research_id", None)
    if research_id is None:
        return None
    out: Run = dict(run) if run is not None else new_run(research_id)
    steps: dict[str, Any] = dict(out["steps"])
    at = event.occurred_at.isoformat()
    out["updated_at"] = at
    match event:
        case ResearchStarted():
            out.update(
                question=event.question,
                requested_by=event.requested_by,
                parameters=dict(event.parameters),
                started_at=at,
            )
        case ResearchStepStarted():
            steps[event.step_id] = {
                "kind": event.step_kind,
                "status": "running",
                "description": event.description,
                "started_at": at,
                "ended_at": None,
                "duration_ms": None,
                "error": None,
            }
        case ResearchStepCompleted():
            steps[event.step_id] = _step_end(steps.get(event.step_id), event.step_kind, at) | {
                "status": "succeeded",
                "duration_ms": event.duration_ms,
                "call_ids": list(event.call_ids),
            }
        case ResearchStepFailed():
            steps[event.step_id] = _step_end(steps.get(event.step_id), event.step_kind, at) | {
                "status": "failed",
                "error": f"{event.error_class}: {event.message}",
            }
        case ResearchProgressReported():
            out.update(
                reported_percent=event.percent, steps_total=event.steps_total, message=event.message
            )
        case ResearchCompleted():
            out.update(
                status=event.outcome.value,
                ended_at=at,
                duration_ms=event.duration_ms,
                summary=event.summary,
            )
    out["steps"] = steps
    return out


def _step_end(step: dict[str, Any] | None, kind: str, at: str) -> dict[str, Any]:
    base = step or {"kind": kind, "description": "", "started_at": None, "error": None}
    return {**base, "ended_at": at, "duration_ms": None}


def apply_call(tally: Tally | None, event: Event) -> Tally | None:
    """The tally after one ``calls.results`` event, or None when the event changes nothing."""
    if event.correlation_id is None:
        return None
    out: Tally = dict(tally) if tally is not None else {k: 0 for k in (*_COUNTS, *_SUMS)}
    match event:
        case CallSucceeded():
            out["attempts"] += 1
            out["succeeded"] += 1
            out["cost_usd"] += event.cost_usd
            out["tokens_prompt"] += event.tokens_prompt
            out["tokens_completion"] += event.tokens_completion
            out["latency_ms"] += event.latency_ms
        case CallFailed():
            out["attempts"] += 1
            out["failed"] += 1
            out["latency_ms"] += event.latency_ms or 0.0
        case CallRetryScheduled():
            out["retries"] += 1
        case CallDeadLettered():
            out["dead_lettered"] += 1
        case CallExpired():
            out["expired"] += 1
        case _:
            return None
    at = event.occurred_at.isoformat()
    out["first_at"] = min(out.get("first_at") or at, at)
    out["last_at"] = max(out.get("last_at") or at, at)
    return out


def add_tallies(tallies: Iterable[Mapping[str, Any]]) -> Tally:
    total: Tally = {k: 0 for k in (*_COUNTS, *_SUMS)}
    firsts, lasts = [], []
    for tally in tallies:
        for k in (*_COUNTS, *_SUMS):
            total[k] += tally.get(k, 0)
        if tally.get("first_at"):
            firsts.append(tally["first_at"])
            lasts.append(tally["last_at"])
    total["first_at"] = min(firsts) if firsts else None
    total["last_at"] = max(lasts) if lasts else None
    return total


def progress_percent(run: Mapping[str, Any]) -> float | None:
    if run["status"] == "succeeded":
        return 100.0
    if run.get("reported_percent") is not None:
        return float(run["reported_percent"])
    total = run.get("steps_total")
    if total:
        done = sum(1 for s in run["steps"].values() if s["status"] != "running")
        return round(100.0 * min(done, int(total)) / int(total), 1)
    return None


def view(run: Mapping[str, Any], tallies: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``GET /v1/research/{id}`` answers: the run, its steps, progress and its calls."""
    calls = add_tallies(tallies)
    base = dict(run)
    steps = base.pop("steps")
    counts = {s: 0 for s in ("running", "succeeded", "failed")}
    for step in steps.values():
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    base.pop("reported_percent", None)
    return {
        **base,
        "progress_percent": progress_percent(run),
        "steps": {"total": len(steps), **counts, "items": steps},
        "calls": {
            "made": calls["attempts"],
            "succeeded": calls["succeeded"],
            "failed": calls["failed"],
            "retries": calls["retries"],
            "dead_lettered": calls["dead_lettered"],
            "expired": calls["expired"],
            "cost_usd": round(calls["cost_usd"], 10),
            "tokens_prompt": calls["tokens_prompt"],
            "tokens_completion": calls["tokens_completion"],
            "latency_ms_total": round(calls["latency_ms"], 3),
            "first_at": calls["first_at"],
            "last_at": calls["last_at"],
        },
    }
