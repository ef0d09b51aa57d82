"""Long-running loops across a broker outage: a topic follower (the seen-set, the ledger, the
reply waiter all use one) keeps applying records after the broker comes back, by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from streams.codec import Codec
from streams.errors import BackboneError
from streams.follow import TopicFollower
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._events import call_requested
from tests.integration.outage._broker import eventually, own_broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


async def test_a_follower_resumes_after_the_broker_returns(
    tmp_path: Path, codec: Codec, catalogue: Catalogue
) -> None:
    applied: list[bytes] = []

    async def keep(record: ConsumerRecord[bytes, bytes]) -> None:
        applied.append(record.value or b"")

    async with own_broker(tmp_path, catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, linger_ms=0)
        follower = TopicFollower(kafka, catalogue.name("calls.requests"), keep)
        await follower.start()
        try:
            async with Publisher(kafka, codec, catalogue) as publisher:

                async def write() -> bool:
                    try:
                        await publisher.publish(call_requested(len(applied)))
                    except BackboneError:
                        return False
                    return True

                await eventually(write)
                await eventually(lambda: _at_least(applied, 1))
                await broker.stop()
                await asyncio.sleep(5)  # the follower polls a dead broker meanwhile
                await broker.start()
                await eventually(write, timeout_s=120)
                await eventually(lambda: _at_least(applied, 2), timeout_s=120)
            assert follower.problems() == {}
        finally:
            await follower.stop()


async def _at_least(items: list[bytes], n: int) -> bool:
    return len(items) >= n
