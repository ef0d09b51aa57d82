"""The registry's storage: a compacted, single-partition Kafka topic read from the start on boot.

The registry is a *single writer*: one instance owns the topic and orders every write itself
(as Confluent's leader does). Kafka enforces it: every instance writes through a transactional
producer with the same ``transactional.id`` (derived from the topic), so starting an instance
*fences* the previous one (its next write fails with ``ProducerFenced``) before the new one replays
the log. Ids can therefore never be handed out twice, even if two instances run by mistake: the
older one stops accepting writes. Run one instance per topic.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from infra.errors import InfraError
from streams.admin import create_topics
from streams.connection import client_options
from streams.errors import KafkaUnavailableError
from streams.settings import KafkaSettings
from streams.topics import Catalogue

Apply = Callable[[dict[str, Any], dict[str, Any] | None], None]


class FencedError(InfraError):
    """A newer registry instance took over the topic; this one must not write any more."""

    code = "registry_fenced"


#: The largest record value the registry writes: under the producer's 1 MiB request limit with
#: room for the key and the record's framing.
MAX_RECORD_BYTES = 1_000_000


def _encode(data: dict[str, Any] | None) -> bytes | None:
    return None if data is None else json.dumps(data, separators=(",", ":")).encode()


def encoded_size(data: dict[str, Any]) -> int:
    """Bytes ``data`` takes as a record value of the log."""
    return len(_encode(data) or b"")


class KafkaLog:
    """Append-only JSON records on one partition; :meth:`replay` feeds them back in order."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._fenced: str | None = None

    async def start(self, apply: Apply) -> int:
        """Create the topic if needed, fence any earlier writer, replay into ``apply``."""
        spec = Catalogue().spec("_schemas")
        await create_topics(self.kafka, [(self.topic, spec)])
        producer = AIOKafkaProducer(
            **client_options(self.kafka),
            client_id=f"{self.kafka.client_id}-registry",
            acks="all",
            enable_idempotence=True,
            transactional_id=f"backbone-registry-{self.topic}",
            linger_ms=0,
        )
        try:
            await producer.start()  # initialises the transactional id: fences older instances
        except KafkaError as exc:
            await producer.stop()
            raise KafkaUnavailableError(f"registry cannot reach Kafka: {exc}") from exc
        self._producer = producer
        try:
            # Replaying after fencing sees every write the previous instance committed.
            return await self._replay(apply)
        except BaseException:
            await self.stop()
            raise

    async def _replay(self, apply: Apply) -> int:
        partition = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            **client_options(self.kafka),
            client_id=f"{self.kafka.client_id}-registry",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a late default ("latest") reset would skip the log
            isolation_level="read_committed",
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
        if self._fenced is not None:
            raise FencedError(self._fenced)
        if self._producer is None:
            raise KafkaUnavailableError("the registry log is not started")
        fenced = False
        try:
            async with self._producer.transaction():
                await self._producer.send_and_wait(
                    self.topic, key=_encode(key), value=_encode(value), partition=0
                )
        except ProducerFenced:
            fenced = True  # handled below, once the exception and its frames are released
        except KafkaError as exc:
            raise KafkaUnavailableError(f"registry write to {self.topic} failed: {exc}") from exc
        if fenced:
            self._fenced = (
                f"another registry instance took over {self.topic}; this one no longer writes "
                "(stop it: one registry per topic)"
            )
            await self._drop_fenced_producer()
            raise FencedError(self._fenced)

    async def _drop_fenced_producer(self) -> None:
        await self.stop()
        # aiokafka leaves failed transaction futures in reference cycles; collect them now, not
        # at a random later point: their "exception never retrieved" report formats a traceback,
        # which on CPython 3.11 re-enters ast.parse and breaks any parse the GC interrupted.
        gc.collect()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
