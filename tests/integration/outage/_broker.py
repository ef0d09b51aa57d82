"""A broker of a test's own that can be stopped (SIGTERM or SIGKILL) and started again with its
data, behind :class:`BrokerControl`: the small interface the fault scenarios are written against,
so a cluster (kill one node of several) can stand in for the single broker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from infra.kafka.broker import BrokerOptions, LocalBroker
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings
from streams.topics import Catalogue


class BrokerControl(Protocol):
    """What a fault scenario needs of the Kafka it runs on."""

    @property
    def bootstrap(self) -> str: ...

    async def start(self) -> None:
        """Start (again, with its data); returns once it answers metadata requests."""

    async def kill(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` and return once the process is gone (SIGTERM: waits for a clean stop)."""


class OwnBroker:
    """``stop()`` SIGTERMs the broker and keeps its state; ``kill(SIGKILL)`` ends it at once, with
    no clean shutdown; ``start()`` brings it back with its data."""

    def __init__(self, data_dir: Path) -> None:
        self.broker = LocalBroker(BrokerOptions(heap="256m", data_dir=data_dir, quick_start=True))

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    async def start(self) -> None:
        # after a SIGKILL the broker recovers every partition's log first: on the loaded 2-core
        # box (load average 40) that took more than the default 90 s
        await asyncio.to_thread(self.broker.start, 300.0)

    async def stop(self) -> None:
        await asyncio.to_thread(self.broker.stop)

    async def kill(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if sig == signal.SIGKILL:
            await asyncio.to_thread(self.broker.kill)
        elif sig == signal.SIGTERM:
            await self.stop()
        else:
            raise ValueError(f"a broker is stopped with SIGTERM or SIGKILL, not {sig.name}")


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
