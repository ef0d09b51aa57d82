"""Writing undecodable records to their topic's dead letter, byte for byte, with the reason."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from streams import headers as h
from streams._aiokafka_compat import close_producer
from streams._kafka_errors import translate
from streams.connection import client_options
from streams.errors import BackboneError, TopicCatalogueError
from streams.settings import KafkaSettings
from streams.topics import Catalogue

#: Where records go whose topic is not in the catalogue or names no dead letter.
FALLBACK_DEAD_LETTER = "backbone.undecodable"


def dead_letter_topic(catalogue: Catalogue, real_topic: str) -> str:
    """The real name of the dead-letter topic for records read from ``real_topic``."""
    try:
        spec = catalogue.spec(catalogue.logical(real_topic))
    except TopicCatalogueError:
        return catalogue.name(FALLBACK_DEAD_LETTER)
    return catalogue.name(spec.dead_letter or FALLBACK_DEAD_LETTER)


def dead_letter_headers(
    record: ConsumerRecord[bytes, bytes], error: BackboneError
) -> list[tuple[str, bytes]]:
    """The original headers plus ours naming the reason and the original coordinates."""
    ours = {
        h.DLT_REASON: h.dead_letter_reason(error),
        h.DLT_ERROR_CLASS: type(error).__name__.encode(),
        h.DLT_MESSAGE: (str(error) or error.code)[:1000].encode(),
        h.DLT_ORIGINAL_TOPIC: record.topic.encode(),
        h.DLT_ORIGINAL_PARTITION: str(record.partition).encode(),
        h.DLT_ORIGINAL_OFFSET: str(record.offset).encode(),
        h.DLT_ORIGINAL_TIMESTAMP: str(record.timestamp).encode(),
    }
    kept = [(k, v) for k, v in record.headers if k not in ours]
    return kept + list(ours.items())


class DeadLetters:
    """A lazily started producer for dead letters (most subscribers never need one)."""

    def __init__(self, kafka: KafkaSettings, catalogue: Catalogue) -> None:
        self._kafka = kafka
        self._catalogue = catalogue
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **client_options(self._kafka),
                client_id=f"{self._kafka.client_id}-dead-letters",
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=self._kafka.request_timeout_ms,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise translate(exc, "starting the dead-letter producer") from exc
            self._producer = producer
        return self._producer

    async def send(self, record: ConsumerRecord[bytes, bytes], error: BackboneError) -> str:
        """Write the record to its dead letter and wait for the ack; returns the topic used."""
        topic = dead_letter_topic(self._catalogue, record.topic)
        producer = await self._started()
        try:
            await producer.send_and_wait(
                topic,
                record.value,
                key=record.key,
                headers=dead_letter_headers(record, error),
            )
        except KafkaError as exc:
            raise translate(exc, f"dead-lettering {record.topic}/{record.partition}") from exc
        return topic

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_producer(producer, 2 * self._kafka.request_timeout_ms / 1000)
