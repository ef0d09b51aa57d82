"""A local webhook receiver that records every request and answers from a script."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    #: statuses to answer in order; the last one repeats. (status, extra headers)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(Hit(time.time(), dict(request.headers), await request.read()))
        self.arrived.set()
        status, headers = self.script[min(len(self.hits) - 1, len(self.script) - 1)]
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "nope")

    async def wait_for(self, count: int, timeout: float = 20) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(self.hits)}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)
        return self.hits


@contextlib.asynccontextmanager
async def receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    bird = Receiver()
    app = web.Application()
    app.router.add_post(path, bird.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bird.url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    try:
        yield bird
    finally:
        await runner.cleanup()
