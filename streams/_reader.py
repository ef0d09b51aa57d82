"""A plain (undecoded, group-less unless asked) reader for replay and offset tools."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams._backoff import CONSUMER_BACKOFF, back_off_metadata, learn_topics_together
from streams._kafka_errors import translate
from streams.connection import client_options
from streams.settings import KafkaSettings


@contextlib.asynccontextmanager
async def reader(kafka: KafkaSettings, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-replay",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=kafka.request_timeout_ms,
        **{**CONSUMER_BACKOFF, **options},
    )
    back_off_metadata(consumer)
    learn_topics_together(consumer)
    try:
        await consumer.start()
    except KafkaError as exc:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise translate(exc, f"connecting to {kafka.bootstrap}") from exc
    try:
        yield consumer
    finally:
        await consumer.stop()


async def offsets_at(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], at_ms: int
) -> dict[TopicPartition, int]:
    """Per partition, the first offset whose timestamp is at or after ``at_ms`` (else the end)."""
    found = await consumer.offsets_for_times(dict.fromkeys(tps, at_ms))
    ends = await consumer.end_offsets(tps)
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
