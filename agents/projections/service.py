"""Running projections inside the stack: each in a supervised loop with backoff, visible in health.

A runner that fails (Kafka away, a restore that cannot finish) is stopped, logged, shown as
``failed`` with its error in :meth:`ProjectionService.health`, and started again after a backoff
that doubles up to a minute; a run that lasted a while resets the backoff. Stopping the service
cancels the loops and always completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.projections.metrics import MetricsProjection
from agents.projections.settings import ProjectionSettings
from streams.codec import Codec
from streams.projections import Projection, ProjectionRunner
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.5
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


async def supervise(
    make: Callable[[], ProjectionRunner],
    on_runner: Callable[[ProjectionRunner], None],
    *,
    stable_after_s: float = 30.0,
) -> None:
    """Run runners made by ``make`` forever; a failure restarts one after a growing backoff."""
    backoff = MIN_BACKOFF_S
    while True:
        runner = make()
        on_runner(runner)
        began = time.monotonic()
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            runner.status.state = "failed"
            runner.status.last_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "projection %s failed; restarting in %.1f s", runner.projection.name, backoff
            )
        if time.monotonic() - began > stable_after_s:
            backoff = MIN_BACKOFF_S
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


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
        self._tasks: list[asyncio.Task[None]] = []
        self.runners: dict[str, ProjectionRunner] = {}

    @property
    def store_dir(self) -> Path:
        return self._settings.store_dir

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

            def keep(runner: ProjectionRunner) -> None:
                self.runners[runner.projection.name] = runner

            self._tasks.append(
                asyncio.create_task(supervise(make, keep), name=f"projection-{projection.name}")
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        registry, self._registry = self._registry, None
        if registry is not None:
            await registry.close()

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
