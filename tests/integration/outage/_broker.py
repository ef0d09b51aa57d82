"""A broker of a test's own that can be stopped (SIGTERM) and started again with its data."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from infra.kafka.broker import BrokerOptions, LocalBroker
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings
from streams.topics import Catalogue


class OwnBroker:
    """``stop()`` SIGTERMs the broker and keeps its state; ``start()`` brings it back."""

    def __init__(self, data_dir: Path) -> None:
        self.broker = LocalBroker(BrokerOptions(heap="256m", data_dir=data_dir))

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    async def start(self) -> None:
        await asyncio.to_thread(self.broker.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.broker.stop)


@contextlib.asynccontextmanager
async def own_broker(data_dir: Path, catalogue: Catalogue) -> AsyncIterator[OwnBroker]:
    """A fresh broker with the catalogue applied under ``catalogue``'s prefix; stopped at exit."""
    own = OwnBroker(data_dir)
    await own.start()
    try:
        await apply_catalogue(KafkaSettings(bootstrap=own.bootstrap), catalogue)
        yield own
    finally:
        await own.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 90.0, pause_s: float = 0.5
) -> None:
    """Poll an async predicate until it holds (no timing assertion: a generous deadline)."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - the condition is a remote state, polled
            await asyncio.sleep(pause_s)
