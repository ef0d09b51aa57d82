"""The Publisher across a broker outage: a broken idempotent sequence heals, a withdrawn record
is never written later, and a transaction commits records handed over with ``send()``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import admin_client, partitions
from streams.cluster import cluster_state
from streams.codec import Codec
from streams.errors import BackboneError, KafkaUnavailableError, WriteOutcomeUnknownError
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._events import call_requested
from tests.integration.calls._support import TopicReader
from tests.integration.outage._broker import eventually, own_broker

#: each test starts a broker of its own twice (10-60 s each on a loaded machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


async def _call_ids(kafka: KafkaSettings, codec: Codec, topic: str) -> list[str]:
    async with TopicReader(kafka, codec, topic) as reader:
        for _ in range(20):
            await reader.poll()
        return [e.call_id for e in reader.of("call.requested")]


def _writes(
    publisher: Publisher, refusals: list[BackboneError] | None = None
) -> Callable[[], Awaitable[bool]]:
    """A probe that is true once a publish was acknowledged (refusals are collected)."""

    async def probe() -> bool:
        try:
            await publisher.publish(call_requested(99))
        except BackboneError as exc:
            if refusals is not None:
                refusals.append(exc)
            return False
        return True

    return probe


def _leaders_of(kafka: KafkaSettings, topic: str) -> Callable[[], Awaitable[bool]]:
    """A probe that is true once every partition of ``topic`` has a leader."""

    async def probe() -> bool:
        try:
            state = await cluster_state(kafka, [topic])
        except BackboneError:
            return False
        found = [p for p in state.partitions if p.topic == topic]
        return bool(found) and all(p.leader >= 0 for p in found)

    return probe


async def test_a_broken_sequence_is_healed_by_a_fresh_producer(
    tmp_path: Path, codec: Codec, catalogue: Catalogue
) -> None:
    """aiokafka#1017: batches that expire during an outage longer than request_timeout_ms keep
    their sequence numbers, so every later write got OutOfOrderSequenceNumber (a 422 forever)."""
    async with own_broker(tmp_path, catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, request_timeout_ms=1_000, linger_ms=0)
        async with Publisher(kafka, codec, catalogue) as publisher:
            await eventually(_writes(publisher))  # a broker that just started may need a moment
            await broker.stop()
            with pytest.raises(KafkaUnavailableError):  # it expires holding sequence numbers
                await publisher.publish(call_requested(1))
            assert publisher.problem() is not None
            await broker.start()
            refusals: list[BackboneError] = []
            await eventually(_writes(publisher, refusals))
            assert all(exc.retriable for exc in refusals), [str(e) for e in refusals]
            assert publisher.rebuilds >= 1
            assert publisher.problem() is None
            # and it stays healthy: once every partition has its leader again (the one write
            # above proved one partition only; a restarted broker brings them online one by
            # one), writes to all of them are acknowledged, with no further rebuild
            await eventually(_leaders_of(kafka, catalogue.name("calls.requests")), timeout_s=120)
            rebuilds = publisher.rebuilds
            for i in range(100, 110):
                await publisher.publish(call_requested(i))
            assert publisher.rebuilds == rebuilds


async def test_a_withdrawn_record_is_never_written_later(
    tmp_path: Path, codec: Codec, catalogue: Catalogue
) -> None:
    """Two ways a write is withdrawn while the broker is down, both "not written" (the gateway's
    503), and neither is written once the broker is back:
    - a caller that stops waiting leaves nothing in the producer's buffer;
    - the publisher's own timeout: the request never reached a broker, so it is not "outcome
      unknown" (504)."""
    async with own_broker(tmp_path, catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, linger_ms=0)  # 30 s: no expiry
        async with Publisher(kafka, codec, catalogue) as publisher:
            await eventually(_writes(publisher))
            await broker.stop()
            abandoned = call_requested(1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await publisher.publish(abandoned)
            timed_out = call_requested(2)
            with pytest.raises(KafkaUnavailableError) as raised:
                await publisher.publish(timed_out, timeout_s=2.0)
            assert not isinstance(raised.value, WriteOutcomeUnknownError), raised.value
            await broker.start()
            await eventually(_writes(publisher))
            ids = await _call_ids(kafka, codec, catalogue.name("calls.requests"))
        assert abandoned.model_dump()["call_id"] not in ids
        assert timed_out.model_dump()["call_id"] not in ids
        assert len(ids) == 2  # the two probes, before and after the outage


async def test_a_record_the_broker_refused_to_append_is_not_written(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A produce request the broker answered with a retriable refusal appended nothing: withdrawn
    at its timeout, the record is "not written" (503), not "outcome unknown" (504). The refusal
    here is UNKNOWN_TOPIC_OR_PARTITION (the topic was deleted under a producer whose metadata
    still names its leader), decided before any append like NOT_LEADER_OR_FOLLOWER on a broker
    that just started."""
    topic = catalogue.name("calls.requests")
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish(call_requested(1))  # the producer now knows the topic's leader
        async with admin_client(kafka_settings) as admin:
            await admin.delete_topics([topic])

            async def gone() -> bool:
                return topic not in await admin.list_topics()

            await eventually(gone)
        caplog.set_level(logging.WARNING, logger="aiokafka.producer.sender")
        with pytest.raises(KafkaUnavailableError) as raised:
            await publisher.publish(call_requested(2), timeout_s=3.0)
    answered = [r.getMessage() for r in caplog.records if "error produce response" in r.message]
    assert answered, "the broker never answered the produce request: nothing was tested"
    assert not isinstance(raised.value, WriteOutcomeUnknownError), (raised.value, answered)


async def test_a_transaction_commits_what_send_handed_over(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    events = [call_requested(i) for i in range(5)]
    publisher = Publisher(kafka_settings, codec, catalogue, transactional_id=catalogue.prefix)
    async with publisher, publisher.transaction():
        for event in events:
            await publisher.send(event)  # not awaited: the commit must include them
    topic = catalogue.name("calls.requests")
    found = await partitions(kafka_settings, [topic])
    tps = [TopicPartition(topic, p) for p in found[topic]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # agrees with seek_to_beginning (aiokafka reset race)
    )
    await consumer.start()
    seen = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)  # the last stable offset under read_committed
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                seen += len(batch.get(tp, []))
    finally:
        await consumer.stop()
    assert seen == len(events)
