"""Reading a changelog topic into memory: everything up to its end on start, then follow it.

Used for the seen-set and the endpoint registry: every gateway and worker rebuilds the same view
from the same compacted topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams.admin import partitions
from streams.errors import KafkaUnavailableError
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

OnRecord = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]


class TopicFollower:
    def __init__(self, kafka: KafkaSettings, topic: str, on_record: OnRecord) -> None:
        self._kafka = kafka
        self._topic = topic
        self._on_record = on_record
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Returns once everything written before the call has been applied."""
        found = await partitions(self._kafka, [self._topic])
        tps = [TopicPartition(self._topic, p) for p in found[self._topic]]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            client_id=f"{self._kafka.client_id}-follow",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                    for record in batch.get(tp, []):
                        await self._on_record(record)
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailableError(f"cannot read {self._topic}: {exc}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self._topic}")

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                log.warning("following %s: %s", self._topic, exc)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    try:
                        await self._on_record(record)
                    except Exception:  # one bad record must not stop the view
                        log.exception("cannot apply %s@%d", self._topic, record.offset)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await stop_quietly(consumer)


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer even when the cluster is gone: aiokafka then lets the CancelledError of its
    own fetch task escape from ``stop()``; only a cancellation aimed at *us* is passed on."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except KafkaError as exc:
        log.warning("stopping a consumer: %s", exc)
