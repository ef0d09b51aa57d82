"""The registry's storage: a compacted, single-partition Kafka topic read from the start on boot.

The registry is a *single writer*: one instance owns the topic and orders every write itself
(as Confluent's leader does). Run one instance per topic; a second instance writing to the same
topic could hand out the same id twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.admin import create_topics
from streams.errors import KafkaUnavailableError
from streams.settings import KafkaSettings
from streams.topics import Catalogue

Apply = Callable[[dict[str, Any], dict[str, Any] | None], None]


def _encode(data: dict[str, Any] | None) -> bytes | None:
    return None if data is None else json.dumps(data, separators=(",", ":")).encode()


class KafkaLog:
    """Append-only JSON records on one partition; :meth:`replay` feeds them back in order."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self, apply: Apply) -> int:
        """Create the topic if needed, replay it into ``apply``, then accept appends."""
        spec = Catalogue().spec("_schemas")
        await create_topics(self.kafka, [(self.topic, spec)])
        count = await self._replay(apply)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap,
            client_id=f"{self.kafka.client_id}-registry",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise KafkaUnavailableError(f"registry cannot reach Kafka: {exc}") from exc
        self._producer = producer
        return count

    async def _replay(self, apply: Apply) -> int:
        partition = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap,
            client_id=f"{self.kafka.client_id}-registry",
            group_id=None,
            enable_auto_commit=False,
        )
        count = 0
        try:
            await consumer.start()
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            while await consumer.position(partition) < end:
                batches = await consumer.getmany(partition, timeout_ms=1_000)
                for record in batches.get(partition, []):
                    if record.key is None:
                        continue
                    value = None if record.value is None else json.loads(record.value)
                    apply(json.loads(record.key), value)
                    count += 1
        except KafkaError as exc:
            raise KafkaUnavailableError(f"registry cannot read {self.topic}: {exc}") from exc
        finally:
            await consumer.stop()
        return count

    async def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        """Write one record and wait until the cluster acknowledged it (acks=all)."""
        if self._producer is None:
            raise KafkaUnavailableError("the registry log is not started")
        try:
            await self._producer.send_and_wait(
                self.topic, key=_encode(key), value=_encode(value), partition=0
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"registry write to {self.topic} failed: {exc}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
