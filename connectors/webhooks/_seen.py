"""Replay protection for inbound webhooks: the ids each source has already had accepted.

The set lives in the compacted ``webhooks.seen`` topic (key ``{source}/{webhook-id}``), so it
survives restarts and is shared by every gateway: on start the whole topic is read (keys only, no
decoding) and afterwards it is tailed, so ids accepted by another gateway arrive within moments.

Two identical requests racing inside one gateway are serialised by :meth:`SeenSet.claim`: the
second waits for the first and then sees its outcome. Across gateways a race inside the tailing
lag can still produce a duplicate ``webhook.received``; it carries the same ``webhook_id``, which
consumers deduplicate on (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.errors import KafkaUnavailableError
from streams.settings import KafkaSettings


def seen_key(source: str, webhook_id: str) -> bytes:
    return f"{source}/{webhook_id}".encode()


class SeenSet:
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._keys: set[bytes] = set()
        self._inflight: dict[bytes, tuple[asyncio.Lock, int]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None

    def __contains__(self, key: bytes) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: bytes) -> None:
        self._keys.add(key)

    async def start(self) -> None:
        """Load every key up to the current end of the topic, then keep tailing it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            client_id=f"{self._kafka.client_id}-webhooks-seen",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(self._topic)
            if not partitions:
                await consumer._client.force_metadata_update()  # a topic created a moment ago
                partitions = consumer.partitions_for_topic(self._topic) or set()
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                    for record in batch.get(tp, []):
                        if record.key is not None and record.value is not None:
                            self._keys.add(record.key)
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailableError(f"cannot load {self._topic}: {exc}") from exc
        self._consumer = consumer
        self._tail = asyncio.create_task(self._follow(), name="webhooks-seen-tail")

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000)
            except KafkaError:
                await asyncio.sleep(1)  # the cluster is away; local marks keep working
                continue
            for records in batch.values():
                self._keys.update(r.key for r in records if r.key is not None)

    async def stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail
        if self._consumer is not None:
            await self._consumer.stop()

    @contextlib.asynccontextmanager
    async def claim(self, key: bytes) -> AsyncIterator[bool]:
        """Hold ``key`` exclusively; yields whether it was already accepted.

        Concurrent claims of one key queue up, so a request racing its twin sees the twin's
        outcome instead of both writing an event."""
        lock, holders = self._inflight.get(key, (asyncio.Lock(), 0))
        self._inflight[key] = (lock, holders + 1)
        try:
            async with lock:
                yield key in self._keys
        finally:
            lock, holders = self._inflight[key]
            if holders == 1:
                del self._inflight[key]
            else:
                self._inflight[key] = (lock, holders - 1)
