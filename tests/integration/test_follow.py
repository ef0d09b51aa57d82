"""``TopicFollower.caught_up`` on the real broker: a barrier on what was *applied*, not fetched."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from infra.testing.pytest_plugin import NewTopic
from streams.connection import client_options
from streams.follow import TopicFollower
from streams.long_poll import LONG_POLL_MS, long_poll
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_caught_up_waits_for_a_fetched_batch_to_be_applied(
    kafka_settings: KafkaSettings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic()
    gate = asyncio.Event()  # the view applies a record only once the test lets it
    fetched = asyncio.Event()
    applied: list[bytes] = []

    async def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        fetched.set()
        await gate.wait()
        applied.append(record.value or b"")

    follower = TopicFollower(kafka_settings, topic, apply)
    await follower.start()
    try:
        await producer.send_and_wait(topic, b"claim")
        await asyncio.wait_for(fetched.wait(), 30)  # fetched: the consumer's position is past it
        barrier = asyncio.create_task(follower.caught_up())
        await asyncio.sleep(1.0)
        assert not barrier.done(), "caught_up returned before the fetched record was applied"
        gate.set()
        await asyncio.wait_for(barrier, 30)
        assert applied == [b"claim"]
    finally:
        gate.set()
        await follower.stop()


async def test_a_started_follower_long_polls_and_still_applies_what_arrives(
    kafka_settings: KafkaSettings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    """Idle, a follower parks its fetch at the broker (streams._long_poll); the broker answers it
    as soon as a record is there, and the offset lookups of start and caught_up still answer."""
    topic = await new_topic()
    applied = asyncio.Event()

    async def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        applied.set()

    follower = TopicFollower(kafka_settings, topic, apply)
    await follower.start()
    try:
        fetcher = follower._consumer._fetcher  # type: ignore[union-attr]
        assert fetcher._fetch_max_wait_ms == LONG_POLL_MS
        await asyncio.sleep(1.0)  # a fetch is parked now
        await producer.send_and_wait(topic, b"wake")
        await asyncio.wait_for(applied.wait(), 30)
        await follower.caught_up(timeout_s=30)
    finally:
        await follower.stop()


async def test_a_partition_consumed_late_is_not_left_out_of_the_long_poll(
    kafka_settings: KafkaSettings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    """Records fetched but consumed only later (a busy loop, a batch in hand) hold their node's
    next fetch (streams._aiokafka_compat.set_fetch_max_wait). Otherwise aiokafka sends that fetch
    after 0.1 s without their partition, and the partition's next record waits for it to return:
    the whole long poll, as nothing arrives on the other partition."""
    topic = await new_topic(2)
    first, other = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(
        **client_options(kafka_settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=LONG_POLL_MS,
    )
    await consumer.start()
    try:
        consumer.assign([first, other])
        assert await consumer.getmany(timeout_ms=500) == {}  # positions looked up
        long_poll(consumer)
        await asyncio.sleep(1.0)  # a long fetch of both partitions is parked at the broker
        await producer.send_and_wait(topic, b"one", partition=0)
        await asyncio.sleep(0.5)  # fetched, not consumed: past aiokafka's 0.1 s prefetch backoff
        taken = await consumer.getmany(timeout_ms=LONG_POLL_MS)
        assert [r.value for r in taken[first]] == [b"one"]
        await producer.send_and_wait(topic, b"two", partition=0)
        taken = await consumer.getmany(timeout_ms=LONG_POLL_MS // 2)
        assert [r.value for r in taken.get(first, [])] == [b"two"], (
            "the partition's next record waited for a long fetch sent without it"
        )
    finally:
        await consumer.stop()
