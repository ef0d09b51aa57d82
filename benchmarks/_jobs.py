"""A process of a benchmark's own (a load generator, websocket clients) reused across its phases.

Spawning a Python process costs its imports (about a CPU second here, several wall seconds on a
loaded 2-core box); a module that needs one per phase and server pays it once with
:class:`JobProcess` instead: the process is spawned once and runs ``target(*job)`` for each job
sent to it, in turn, answering each with the result (or the error it raised, re-raised here).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class JobError(RuntimeError):
    """A job raised in the process; the message names the exception and says what it was."""


def _serve(conn: Connection, target: Callable[..., Any]) -> None:
    """In the spawned process: run ``target(*job)`` for each job until ``None`` arrives."""
    while (job := conn.recv()) is not None:
        try:
            conn.send(("ok", target(*job)))
        except Exception as exc:  # reported to the parent, never silent
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()


class JobProcess:
    """``target`` (a module-level function: it is pickled) in one spawned process, job after job.

    ``async with JobProcess(f) as jobs: a = await jobs.run(1); b = await jobs.run(2)`` runs
    ``f(1)`` and ``f(2)`` in the same process; leaving the block stops it."""

    def __init__(self, target: Callable[..., Any]) -> None:
        self._conn, child = mp.Pipe()
        self._proc = mp.get_context("spawn").Process(
            target=_serve, args=(child, target), daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def start(self) -> None:
        """Spawn the process; returns at once (its imports overlap with whatever comes next)."""
        self._proc.start()

    async def run(self, *job: Any) -> Any:
        """``target(*job)`` in the process; its result, or :class:`JobError` with its error."""
        self._conn.send(job)
        status, result = await asyncio.to_thread(self._conn.recv)
        if status == "error":
            raise JobError(result)
        return result

    async def stop(self, timeout: float = 10.0) -> None:
        if self._proc.pid is None:
            return
        if self._proc.is_alive():
            self._conn.send(None)
            await asyncio.to_thread(self._proc.join, timeout)
        if self._proc.is_alive():
            self._proc.kill()
            await asyncio.to_thread(self._proc.join, timeout)
        self._conn.close()

    async def __aenter__(self) -> JobProcess:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
