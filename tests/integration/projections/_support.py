"""A toy projection and helpers for driving :class:`ProjectionRunner` in tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from streams import Subscriber
from streams.codec import Codec
from streams.consumer import Received
from streams.events.monitoring import MetricsWindow
from streams.projections import Changes, Projection, SqliteStore, StateView, store_path
from streams.settings import KafkaSettings
from streams.topics import Catalogue, TopicRole, TopicSpec


def with_changelog(catalogue: Catalogue, name: str) -> Catalogue:
    spec = TopicSpec(name, TopicRole.CHANGELOG, "state key", (), "test", compacted=True)
    return replace(catalogue, specs=(*catalogue.specs, spec))


class CallCounts(Projection):
    """Outcomes per service and event type; raises on service ``boom`` (to be dead-lettered)."""

    name = "counts"
    sources = ("calls.results",)
    changelog = "test.counts.changelog"

    def apply(self, state: StateView, received: Received) -> Changes:
        event: Any = received.event
        if event.service == "boom":
            raise ValueError("boom is not a service")
        key = f"count/{event.service}/{event.event_type}"
        return Changes(puts={key: (state.get(key) or 0) + 1})


def lose_store(store_dir: Path, name: str) -> None:
    """Delete a projection's local store, as a lost disk would."""
    base = store_path(store_dir, name)
    for path in (base, Path(f"{base}-wal"), Path(f"{base}-shm")):
        path.unlink(missing_ok=True)


def read_state(store_dir: Path, name: str, prefix: str = "count/") -> dict[str, Any]:
    store = SqliteStore(store_path(store_dir, name))
    try:
        out: dict[str, Any] = {}
        for _task, key, value in store.items(prefix=prefix):
            out[key] = out.get(key, 0) + value if isinstance(value, int) else value
        return out
    finally:
        store.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(runner: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def windows(kafka: KafkaSettings, codec: Codec, cat: Catalogue) -> list[MetricsWindow]:
    """Every ``MetricsWindow`` on ``monitoring.metrics`` so far."""
    out: list[MetricsWindow] = []
    async with Subscriber(kafka, codec, cat, ["monitoring.metrics"], None, stop_at_end=True) as sub:
        async for received in sub:
            assert isinstance(received.event, MetricsWindow)
            out.append(received.event)
    return out
