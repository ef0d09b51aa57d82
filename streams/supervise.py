"""Supervised background loops: no task of ours dies silently, and teardown always runs in full.

Hierarchy of outcomes for a loop run by a :class:`Supervisor`:

- it raises a *transient* error (``BackboneError.retriable``, a Kafka/connection error, a
  timeout): logged (rate-limited by the logging set-up), reported in :meth:`Supervisor.problems`
  (readiness), and the loop is started again after a capped, jittered back-off;
- it raises anything else: it *died for good*. The supervisor logs one line, records the error
  in :attr:`Supervisor.failure` and reports it to ``on_fatal``, or else to the event loop's
  exception handler with ``FATAL`` set in the context (``backbone up`` installs a handler that
  stops everything and exits non-zero; asyncio's default one logs it). It never re-raises at :meth:`Supervisor.close`, so the caller's teardown
  (drain, commit, stop) always runs;
- it returns: finished, nothing more.

:meth:`Supervisor.close` cancels every loop and waits for all of them, whatever happened before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from streams._backoff import Backoff
from streams.errors import BackboneError

log = logging.getLogger(__name__)

__all__ = [
    "FATAL",
    "Backoff",
    "LoopState",
    "Supervisor",
    "is_transient",
    "report_death",
    "retrying",
]

LoopFactory = Callable[[], Awaitable[None]]
#: key in an event-loop exception context: a supervised loop died for good
FATAL = "backbone_fatal"


def report_death(what: str, exc: BaseException) -> None:
    """A loop of ``what`` died for good: tell the event loop's exception handler, with ``FATAL``
    set. asyncio logs it (with the traceback) by default; ``backbone up`` installs a handler
    that stops the stack and exits non-zero (infra/stack.py)."""
    asyncio.get_running_loop().call_exception_handler(
        {"message": f"{what} died for good: {type(exc).__name__}: {exc}", "exception": exc,
         FATAL: True}
    )  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Errors a retry can cure: ours marked retriable, Kafka's, connections, timeouts."""
    if isinstance(exc, BackboneError):
        return exc.retriable
    return isinstance(exc, KafkaError | ConnectionError | TimeoutError)


async def retrying(
    op: Callable[[], Awaitable[None]],
    what: str,
    *,
    cap_s: float = 10.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``op()`` until it succeeds, backing off (capped, jittered) on transient errors; any
    other error is raised. For steps that must not be skipped (a record's side effects before
    its commit), where restarting the whole loop would move past them."""
    backoff = Backoff(cap_s=cap_s)
    while True:
        try:
            await op()
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff.next()
            log.warning(
                "%s failed, retrying in %.1f s: %s: %s", what, delay, type(exc).__name__, exc
            )
            await asyncio.sleep(delay)


@dataclass
class LoopState:
    name: str
    restarts: int = 0
    last_error: str | None = None
    failing_since: float | None = None  # monotonic; None while healthy
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Runs named loops; restarts them on transient errors; reports the rest once, clearly."""

    def __init__(
        self,
        owner: str,
        *,
        on_fatal: Callable[[str, BaseException], None] | None = None,
        backoff_cap_s: float = 10.0,
    ) -> None:
        self.owner = owner
        self._on_fatal = on_fatal
        self._cap = backoff_cap_s
        self._loops: dict[str, LoopState] = {}
        self.failure: tuple[str, BaseException] | None = None
        self._closing = False

    def start(self, name: str, loop: LoopFactory, *, healthy_after_s: float = 5.0) -> None:
        """Run ``loop()`` under supervision; ``healthy_after_s`` of running clears a failure."""
        if name in self._loops:
            raise ValueError(f"{self.owner}: a loop named {name!r} already runs")
        state = LoopState(name)
        self._loops[name] = state
        state.task = asyncio.create_task(
            self._run(state, loop, healthy_after_s), name=f"{self.owner}:{name}"
        )

    def mark_ok(self, name: str) -> None:
        """A loop says it made progress (clears its reported problem)."""
        state = self._loops.get(name)
        if state is not None:
            state.last_error, state.failing_since = None, None

    async def _run(self, state: LoopState, loop: LoopFactory, healthy_after_s: float) -> None:
        backoff = Backoff(cap_s=self._cap)
        while not self._closing:
            began = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    self._died(state, exc)
                    return
                if time.monotonic() - began > healthy_after_s:
                    backoff.reset()
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.failing_since = state.failing_since or time.monotonic()
                delay = backoff.next()
                log.warning(
                    "%s: %s stopped on a transient error, restarting in %.1f s: %s",
                    self.owner, state.name, delay, state.last_error,
                )  # fmt: skip
                await asyncio.sleep(delay)

    def _died(self, state: LoopState, exc: BaseException) -> None:
        state.last_error = f"died: {type(exc).__name__}: {exc}"
        state.failing_since = state.failing_since or time.monotonic()
        if self.failure is None:
            self.failure = (state.name, exc)
        what = f"{self.owner}: {state.name}"
        if self._on_fatal is not None:
            log.error("%s died for good: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
            self._on_fatal(what, exc)
            return
        report_death(what, exc)

    def problems(self) -> dict[str, str]:
        """Loops that are failing now, with their last error (empty: all healthy)."""
        return {s.name: s.last_error for s in self._loops.values() if s.last_error is not None}

    def restarts(self, name: str) -> int:
        return self._loops[name].restarts

    async def close(self) -> None:
        """Cancel every loop and wait for all of them; never raises their old errors."""
        self._closing = True
        tasks = [s.task for s in self._loops.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._loops.clear()
        self._closing = False
