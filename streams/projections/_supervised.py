"""A projection kept running under a :class:`~streams.supervise.Supervisor`.

One runner at a time. A runner that meets a transient error (Kafka away: its start, its
checkpoint's transaction or its idle probe did not answer in time; a restore that could not
finish) is stopped, within bounds, and replaced by a fresh one after the supervisor's capped,
jittered back-off: new producer and transactional id, restore from the changelog, seek to the
store's checkpoint. So no record is applied twice (the store's checkpoint moves only with a
committed transaction) and none is skipped (the fresh runner resumes from that checkpoint).
Any other error is a bug: the supervisor reports it as died for good (``backbone up`` exits).

:meth:`problem` is the readiness check: the supervisor's last error while failing, the runner's
state while it starts or restores, else None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.projections._runner import ProjectionRunner, ProjectionStatus
from streams.supervise import Supervisor

RunnerFactory = Callable[[], ProjectionRunner]


class SupervisedProjection:
    """Runs the runners ``make()`` builds, one after another, for as long as it is started."""

    def __init__(self, name: str, make: RunnerFactory, supervisor: Supervisor) -> None:
        self.name = name
        self._make = make
        self._supervisor = supervisor
        self.runner: ProjectionRunner | None = None
        #: how many runners were built (1 + the replacements)
        self.runs = 0

    def start(self) -> None:
        self._supervisor.start(self.name, self._run)

    @property
    def status(self) -> ProjectionStatus:
        """The current runner's status (``starting`` before the first one exists)."""
        return self.runner.status if self.runner is not None else ProjectionStatus(self.name)

    def problem(self) -> str | None:
        """Why the projection is not up to date now, or None."""
        failing = self._supervisor.problems().get(self.name)
        if failing is not None:
            return failing
        state = self.status.state
        return None if state == "running" else state

    async def _run(self) -> None:
        runner = self.runner = self._make()
        self.runs += 1
        try:
            await runner.start()
            while True:
                await runner.step()
                if runner.status.state == "running":
                    self._supervisor.mark_ok(self.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            runner.status.state = "failed"
            runner.status.last_error = f"{type(exc).__name__}: {exc}"
            raise  # to the supervisor: transient -> a fresh runner after back-off
        finally:
            await runner.stop()  # bounded: never waits on the cluster
