"""The research-progress projection: ``research.events`` joined with ``calls.results``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.research._progress import (
    CALLS_PREFIX,
    RUN_PREFIX,
    apply_call,
    apply_research,
    view,
)
from streams.consumer import Received
from streams.projections import NO_CHANGES, Changes, Projection, SqliteStore, StateView, store_path

RESEARCH = "research.events"
RESULTS = "calls.results"
CHANGELOG = "projections.research.changelog"


class ResearchProgress(Projection):
    """Per run: status, steps, progress, calls made, failures, cost so far, timings.

    Both sources have the same partition count (the runner's tasks); a run's events sit on one
    task, its calls' tallies on any, and :class:`ResearchReader` adds the tallies up.
    """

    name = "research-progress"
    sources = (RESEARCH, RESULTS)
    changelog = CHANGELOG

    def apply(self, state: StateView, received: Received) -> Changes:
        event = received.event
        if received.topic.endswith(RESEARCH):
            key = RUN_PREFIX + str(getattr(event, "research_id", ""))
            run = apply_research(state.get(key), event)
            return NO_CHANGES if run is None else Changes(puts={key: run})
        if event.correlation_id is None:
            return NO_CHANGES
        key = CALLS_PREFIX + event.correlation_id
        tally = apply_call(state.get(key), event)
        return NO_CHANGES if tally is None else Changes(puts={key: tally})


class ResearchReader:
    """Queries over a research-progress store (the runner writes it; WAL lets us read alongside)."""

    def __init__(self, store_dir: Path) -> None:
        self._store = SqliteStore(store_path(store_dir, ResearchProgress.name))

    def close(self) -> None:
        self._store.close()

    def run(self, research_id: str) -> dict[str, Any] | None:
        runs = [v for _, _, v in self._store.items(prefix=RUN_PREFIX + research_id) if v]
        found = [r for r in runs if r.get("research_id") == research_id]
        if not found:
            return None
        key = CALLS_PREFIX + research_id
        tallies = [v for _, k, v in self._store.items(prefix=key) if k == key]
        return view(found[0], tallies)

    def runs(self, status: str | None = None) -> Iterator[dict[str, Any]]:
        for _, _, run in self._store.items(prefix=RUN_PREFIX):
            if status is None or run.get("status") == status:
                detail = self.run(run["research_id"])
                if detail is not None:
                    yield detail
