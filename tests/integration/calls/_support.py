"""Helpers for the call-pipeline integration tests: publish requests, run a worker, read outcomes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.settings import WorkerSettings
from agents.worker import CallWorker
from connectors.base import Connector
from streams.codec import Codec
from streams.events import Event
from streams.events.calls import CallRequested, Priority
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue

TERMINAL = ("call.succeeded", "call.dead_lettered", "call.expired")


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
