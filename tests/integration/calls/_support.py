"""Helpers for the call-pipeline integration tests: publish requests, run a worker, read outcomes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.retry import RetryPolicy
from agents.settings import WorkerSettings
from agents.worker import CallWorker
from connectors.base import Connector
from connectors.settings import ServiceSettings
from streams.admin import admin_client
from streams.codec import Codec
from streams.events import Event
from streams.events.calls import CallRequested, Priority
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

TERMINAL = ("call.succeeded", "call.dead_lettered", "call.expired")


def worker_settings(
    catalogue: Catalogue,
    *,
    delays_s: tuple[float, ...] | None = None,
    simulated: Sequence[str] = (),
    **fields: Any,
) -> WorkerSettings:
    """A test's worker settings: its group under the test's topic prefix, ``delays_s`` its retry
    schedule, ``simulated`` names of simulator services; ``fields`` as :class:`WorkerSettings`
    takes them (``runtime``, ``breaker``, ``services``, ``max_in_flight``, ...)."""
    values: dict[str, Any] = {"group_id": f"{catalogue.prefix}calls", **fields}
    if delays_s is not None:
        values["retry"] = RetryPolicy(delays_s=delays_s)
    if simulated:
        sims = tuple(ServiceSettings(name=name, kind="simulated") for name in simulated)
        values["services"] = (*values.get("services", ()), *sims)
    return WorkerSettings(**values)


def request(
    service: str = "sim",
    *,
    priority: Priority = Priority.NORMAL,
    deadline: datetime | None = None,
    payload: str = '{"q": 1}',
    key: str | None = None,
) -> CallRequested:
    call_id = uuid.uuid4().hex
    return CallRequested(
        call_id=call_id,
        service=service,
        operation="chat",
        payload=payload,
        priority=priority,
        deadline=deadline,
        idempotency_key=key or call_id,
    )


async def publish(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    events: Sequence[Event],
    *,
    topic: str | None = None,
    headers: Mapping[str, bytes] | None = None,
) -> None:
    async with Publisher(kafka, codec, catalogue) as publisher:
        for event in events:
            await publisher.publish(event, topic=topic, headers=headers)


@asynccontextmanager
async def running_worker(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    settings: WorkerSettings,
    connectors: Mapping[str, Connector] | None = None,
) -> AsyncIterator[CallWorker]:
    worker = CallWorker(kafka, codec, catalogue, settings, connectors=connectors)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


class TopicReader:
    """Reads a topic from the beginning (no group) and keeps everything it decoded."""

    def __init__(
        self, kafka: KafkaSettings, codec: Codec, topic: str, *, committed: bool = False
    ) -> None:
        self._kafka, self._codec, self._topic = kafka, codec, topic
        self._isolation = "read_committed" if committed else "read_uncommitted"
        self.records: list[tuple[Event, dict[str, bytes], int]] = []  # event, headers, timestamp
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self._isolation,
        )
        await consumer.start()
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(self._topic, p) for p in consumer.partitions_for_topic(self._topic) or ()
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        for records in (await self._consumer.getmany(timeout_ms=100)).values():
            for r in records:
                if r.value is not None:
                    event = await self._codec.decode(r.value)
                    self.records.append((event, {k: bytes(v) for k, v in r.headers}, r.timestamp))

    @property
    def events(self) -> list[Event]:
        return [e for e, _, _ in self.records]

    def of(self, event_type: str) -> list[Any]:
        return [e for e in self.events if e.event_type == event_type]

    async def wait_for(self, done: Callable[[TopicReader], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                counts: dict[str, int] = {}
                for e in self.events:
                    counts[e.event_type] = counts.get(e.event_type, 0) + 1
                raise AssertionError(f"timed out after {timeout} s; saw {counts}")
            await self.poll()
            await asyncio.sleep(0)


def terminal(reader: TopicReader) -> list[Any]:
    return [e for e in reader.events if e.event_type in TERMINAL]


@asynccontextmanager
async def worker_processes(
    kafka: KafkaSettings,
    catalogue: Catalogue,
    registry: RegistrySettings,
    config: Path,
    log: Path,
) -> AsyncIterator[Callable[[], Awaitable[asyncio.subprocess.Process]]]:
    """Starts real ``backbone worker`` processes on demand; stops whatever still runs at exit."""
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_CONFIG": str(config),
    }
    started: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "infra.cli", "worker", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def run_with_a_kill(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    registry: RegistrySettings,
    config: Path,
    log: Path,
    call_ids: set[str],
    *,
    kill_after: int,
    at_kill: Callable[[int], None] = lambda _: None,
    busy: Callable[[], bool] = lambda: True,
) -> tuple[list[Any], int]:
    """Run a worker until ``kill_after`` calls ended and it is ``busy`` (e.g. a call is at the
    service), SIGKILL it (no clean shutdown, no final commit), let a second worker finish every
    call; the terminal outcomes and how many came before the kill (``at_kill`` is told that
    number the moment the first worker is dead)."""
    topic = catalogue.name("calls.results")
    async with (
        worker_processes(kafka, catalogue, registry, config, log) as start,
        TopicReader(kafka, codec, topic, committed=True) as results,
    ):
        first = await start()
        await results.wait_for(lambda r: len(terminal(r)) >= kill_after, timeout=60)
        async with asyncio.timeout(60):
            while True:
                if busy():
                    break
                await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        before_kill = len(terminal(results))
        at_kill(before_kill)
        await start()
        await results.wait_for(lambda r: {e.call_id for e in terminal(r)} >= call_ids, timeout=90)
        await asyncio.sleep(2)  # give any duplicate outcome time to show up
        await results.poll()
        return terminal(results), before_kill


async def committed_to(
    kafka: KafkaSettings, group: str, tp: TopicPartition, end: int, timeout: float = 90.0
) -> int:
    """Wait until ``group`` has committed ``tp`` up to ``end`` (fails past ``timeout``)."""
    deadline = time.monotonic() + timeout
    async with admin_client(kafka) as admin:
        while True:
            try:
                offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
            except KafkaError as exc:  # a fresh broker: the coordinator is still being elected
                if not exc.retriable:
                    raise
                offsets = {}
            committed = offsets[tp].offset if tp in offsets else -1
            if committed >= end:
                return committed
            assert time.monotonic() < deadline, f"{group} committed {committed} of {end}"
            await asyncio.sleep(0.2)
