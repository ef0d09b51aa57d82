"""Run an async service in a thread with its own event loop, so a session-scoped fixture can
serve every test while each test runs in its own loop (pytest-asyncio's default)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Protocol


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BackgroundService:
    def __init__(self, service: _Service, *, timeout: float = 60.0) -> None:
        self.service = service
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="backbone-background", daemon=True
        )

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def start(self) -> None:
        self._thread.start()
        try:
            self._call(self.service.start())
        except BaseException:
            self._shutdown()
            raise

    def stop(self) -> None:
        try:
            self._call(self.service.stop())
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        self._loop.close()
