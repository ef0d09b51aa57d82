"""What the gateway needs before it can acknowledge a write, and how it starts without Kafka.

- :func:`add_check`: a named readiness check (a publisher's :meth:`~streams.Publisher.problem`),
  reported by ``GET /readyz``.
- :func:`depends_on`: a Kafka-backed part that routes need loaded first (the webhook seen-set,
  the reply follower). It is started in the background with capped, jittered back-off, so the
  gateway starts (not ready) while Kafka is down; until it is loaded, requests under its path
  prefixes get 503 with ``Retry-After``, and ``/readyz`` names it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from connectors.gateway._problems import problem
from streams.errors import TopicCatalogueError
from streams.supervise import Backoff, is_transient

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
RETRY_AFTER_S = "1"


@dataclass
class Dependency:
    name: str
    prefixes: tuple[str, ...]
    ready: bool = False
    detail: str = "starting"
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def problem(self) -> str | None:
        return None if self.ready else self.detail


@dataclass
class Readiness:
    checks: list[tuple[str, Check]] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)


READINESS = web.AppKey("backbone.readiness", Readiness)


def readiness_of(app: web.Application) -> Readiness:
    """The app's readiness registry; on first use it also installs the middleware that answers
    503 for routes whose dependencies have not loaded (so plain aiohttp apps get it too)."""
    if READINESS not in app:
        app[READINESS] = Readiness()
        app.middlewares.append(dependencies_middleware)
    return app[READINESS]


def add_check(app: web.Application, name: str, check: Check) -> None:
    """Report ``check()`` (None = fine, else why not) in ``/readyz``; callable from a cleanup
    context (e.g. once a publisher exists)."""
    readiness_of(app).checks.append((name, check))


def depends_on(
    app: web.Application,
    name: str,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    prefixes: Sequence[str],
) -> Dependency:
    """Start ``start()`` in the background once the app runs, until it succeeds; ``stop()`` at
    cleanup (only if it started). Requests under ``prefixes`` get 503 until it has started."""
    dependency = Dependency(name, tuple(prefixes))
    readiness_of(app).dependencies.append(dependency)

    async def attempt() -> bool:
        """One start; True once started. Errors other than transient ones are for good."""
        try:
            await start()
        except Exception as exc:
            # a missing topic may be created any moment (`backbone topics apply`): wait for it
            if not (is_transient(exc) or isinstance(exc, TopicCatalogueError)):
                dependency.detail = f"failed for good: {type(exc).__name__}: {exc}"
                log.error("gateway: %s cannot start: %s", name, dependency.detail)
                raise
            dependency.detail = f"waiting for Kafka: {exc}"
            return False
        dependency.ready, dependency.detail = True, "loaded"
        return True

    async def starting() -> None:
        backoff = Backoff(first_s=0.2, cap_s=5.0)
        while True:
            await asyncio.sleep(backoff.next())
            try:
                if not await attempt():
                    continue
            except Exception:  # failed for good (logged): its routes stay at 503
                return
            log.info("gateway: %s loaded; its routes are open", name)
            return

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        if not await attempt():  # Kafka is up: serve only once loaded, as before
            log.warning("gateway: %s waits for Kafka; its routes answer 503 meanwhile", name)
            dependency.task = asyncio.create_task(starting(), name=f"gateway-start-{name}")
        try:
            yield
        finally:
            if dependency.task is not None:
                dependency.task.cancel()
                await asyncio.gather(dependency.task, return_exceptions=True)
            if dependency.ready:
                await stop()

    app.cleanup_ctx.append(lifecycle)
    return dependency


@web.middleware
async def dependencies_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    for dependency in request.app[READINESS].dependencies:
        if not dependency.ready and request.path.startswith(dependency.prefixes):
            return problem(
                503,
                "starting",
                f"not ready: {dependency.name} is {dependency.detail}",
                headers={"Retry-After": RETRY_AFTER_S},
            )
    return await handler(request)
