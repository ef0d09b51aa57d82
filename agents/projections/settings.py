"""Settings of the projections the worker runs (``[projections]`` in the config file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ProjectionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Run the projections in the stack (``backbone up``); ``backbone projections`` works regardless.
    enabled: bool = True
    #: Where the local stores live (one SQLite file per projection; restored from the changelog
    #: when missing). ``load_settings`` defaults it to ``<BACKBONE_STATE_DIR>/projections``.
    store_dir: Path = Path(".backbone/projections")
    #: Length of a metrics window (tumbling, on event time).
    metrics_window_s: int = Field(default=60, ge=1, le=3600)
    #: How long after its end a window stays open for late records (event time).
    metrics_grace_s: float = Field(default=10.0, ge=0)
    #: Event ids remembered (event time) to drop redelivered duplicates.
    dedupe_window_s: float = Field(default=3600.0, ge=0)
    #: An idle task closes its due windows by wall-clock time this often.
    idle_flush_s: float = Field(default=5.0, gt=0)
