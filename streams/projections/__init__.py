"""Projections: read models of the log with durable, checkpointed state.

A projection is a pure ``apply(state, received) -> Changes`` (:class:`Projection`), a local
SQLite store per projection, and offsets committed with the state in one atomic checkpoint.
Every state write also goes to the projection's compacted changelog topic, so a lost store is
restored from the changelog (not from the sources) and a task moves between instances with
its state. :class:`ProjectionRunner` runs one as a member of a consumer group;
:class:`SupervisedProjection` keeps one running (a fresh runner after a transient failure);
:func:`rebuild` recomputes one from its sources into fresh state and swaps it in.

::

    class Counts(Projection):
        name = "counts"
        sources = ("calls.results",)
        changelog = "projections.counts.changelog"

        def apply(self, state, received):
            key = f"count/{received.event.service}"
            return Changes(puts={key: (state.get(key) or 0) + 1})
"""

from __future__ import annotations

from streams.projections._model import (
    CHECKPOINT_KEY,
    JSON,
    NO_CHANGES,
    SEEN_PREFIX,
    BatchState,
    Changes,
    PlainRecord,
    Projection,
    StateView,
    group_of,
)
from streams.projections._rebuild import Progress, RebuildReport, rebuild
from streams.projections._runner import ProjectionRunner, ProjectionStatus, TaskView, store_path
from streams.projections._status import PartitionLag, lag
from streams.projections._store import SqliteStore
from streams.projections._supervised import SupervisedProjection
from streams.projections.errors import (
    ApplyFailed,
    CheckpointFailed,
    ProjectionError,
    RestoreFailed,
)

__all__ = [
    "CHECKPOINT_KEY",
    "JSON",
    "NO_CHANGES",
    "SEEN_PREFIX",
    "ApplyFailed",
    "BatchState",
    "Changes",
    "CheckpointFailed",
    "PartitionLag",
    "PlainRecord",
    "Progress",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "ProjectionStatus",
    "RebuildReport",
    "RestoreFailed",
    "SqliteStore",
    "StateView",
    "SupervisedProjection",
    "TaskView",
    "group_of",
    "lag",
    "rebuild",
    "store_path",
]
