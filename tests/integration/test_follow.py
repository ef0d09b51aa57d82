"""``TopicFollower.caught_up`` on the real broker: a barrier on what was *applied*, not fetched."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from infra.testing.pytest_plugin import NewTopic
from streams.follow import TopicFollower
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
