"""Running projections inside the stack: each a :class:`~streams.projections.SupervisedProjection`.

A runner that fails on a transient error (Kafka away, a checkpoint or restore that cannot finish)
is stopped, logged, shown with its error in :meth:`ProjectionService.health` and
:meth:`ProjectionService.problems` (readiness), and replaced by a fresh one after the
supervisor's capped, jittered back-off; one that dies for good is reported once (``backbone up``
exits non-zero). Stopping the service cancels the loops and always completes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.projections.metrics import MetricsProjection
from agents.projections.settings import ProjectionSettings
from streams.codec import Codec
from streams.projections import Projection, ProjectionRunner, SupervisedProjection
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.supervise import Supervisor
from streams.topics import Catalogue

log = logging.getLogger(__name__)

#: the longest pause between two attempts to run a failed projection again
MAX_BACKOFF_S = 60.0


def projections(settings: ProjectionSettings) -> list[Projection]:
    """Every projection the stack runs (``backbone projections list``)."""
    return [
        MetricsProjection(
            window_s=settings.metrics_window_s,
            grace_s=settings.metrics_grace_s,
            dedupe_window_s=settings.dedupe_window_s,
        )
    ]


class ProjectionService:
    """The stack service (``infra.stack.SERVICES``) that keeps every projection up to date."""

    name = "projections"

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: RegistrySettings,
        catalogue: Catalogue,
        settings: ProjectionSettings,
        chosen: Sequence[Projection] | None = None,
    ) -> None:
        self._kafka = kafka
        self._registry_settings = registry
        self._catalogue = catalogue
        self._settings = settings
        self._projections = list(projections(settings) if chosen is None else chosen)
        self._registry: RegistryClient | None = None
        self.supervisor = Supervisor(self.name, backoff_cap_s=MAX_BACKOFF_S)
        self.supervised: dict[str, SupervisedProjection] = {}

    @property
    def store_dir(self) -> Path:
        return self._settings.store_dir

    @property
    def runners(self) -> dict[str, ProjectionRunner]:
        """The current runner of each projection that has one."""
        return {n: s.runner for n, s in self.supervised.items() if s.runner is not None}

    async def start(self) -> None:
        if not self._settings.enabled:
            return
        registry = self._registry = RegistryClient(self._registry_settings)
        codec = Codec(registry)
        for projection in self._projections:

            def make(p: Projection = projection) -> ProjectionRunner:
                return ProjectionRunner(
                    self._kafka,
                    codec,
                    self._catalogue,
                    p,
                    self._settings.store_dir,
                    flush_interval_s=self._settings.idle_flush_s,
                )

            supervised = SupervisedProjection(projection.name, make, self.supervisor)
            self.supervised[projection.name] = supervised
            supervised.start()

    async def stop(self) -> None:
        await self.supervisor.close()  # cancels the loops; each stops its runner, bounded
        registry, self._registry = self._registry, None
        if registry is not None:
            await registry.close()

    def problems(self) -> dict[str, str]:
        """Projections not up to date now, with why (empty: all are)."""
        found = {name: s.problem() for name, s in self.supervised.items()}
        return {name: problem for name, problem in found.items() if problem is not None}

    def health(self) -> dict[str, Any]:
        return {
            name: {
                "state": r.status.state,
                "tasks": list(r.status.tasks),
                "applied": r.status.applied,
                "duplicates": r.status.duplicates,
                "dead_lettered": r.status.dead_lettered,
                "restored": r.status.restored,
                "last_error": r.status.last_error,
            }
            for name, r in self.runners.items()
        }

    def describe(self) -> str:
        if not self._settings.enabled:
            return "disabled ([projections] enabled = false)"
        names = ", ".join(p.name for p in self._projections)
        return f"{names} (stores in {self._settings.store_dir})"
