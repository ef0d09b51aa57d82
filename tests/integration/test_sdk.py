"""The producer and consumer SDK against the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from infra.testing.pytest_plugin import NewConsumer
from streams import IdempotenceFilter, Publisher, Received, Subscriber, SyncPublisher, headers
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested

pytestmark = pytest.mark.integration


async def _take(sub: Subscriber, n: int, timeout: float = 20) -> list[Received]:
    got: list[Received] = []

    async def run() -> None:
        async for received in sub:
            got.append(received)
            if len(got) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_publish_then_consume_round_trip(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    events = [call_requested(i) for i in range(20)]
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        first = await publisher.publish(events[0])
        rest = await publisher.publish_many(events[1:])
    coords = [first, *rest]
    assert {c.topic for c in coords} == {catalogue.name("calls.requests")}
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], f"g-{uuid.uuid4().hex}"
    ) as sub:
        got = await _take(sub, 20)
        for received in got:
            await sub.commit(received)
    assert {r.event.event_id for r in got} == {e.event_id for e in events}
    by_id = {r.event.event_id: r for r in got}
    for event, c in zip(events, coords, strict=True):
        r = by_id[event.event_id]
        assert (r.topic, r.partition, r.offset) == (c.topic, c.partition, c.offset)
        assert r.event == event
        assert r.key == event.key()
        assert r.headers[headers.EVENT_TYPE] == b"call.requested"
        assert int(r.headers[headers.SCHEMA_ID]) > 0


async def test_commit_is_what_a_restarted_group_resumes_from(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    events = [call_requested(i) for i in range(6)]
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        for event in events:  # one key: one partition, so order is defined
            await publisher.publish(event, key=b"one-partition")
    group = f"g-{uuid.uuid4().hex}"
    async with Subscriber(kafka_settings, codec, catalogue, ["calls.requests"], group) as sub:
        got = await _take(sub, 6)
        await sub.commit(got[2])  # processed the first three only
    async with Subscriber(kafka_settings, codec, catalogue, ["calls.requests"], group) as sub:
        again = await _take(sub, 3)
    assert [r.event.event_id for r in again] == [e.event_id for e in events[3:]]


async def test_undecodable_record_goes_to_the_dead_letter_and_the_partition_moves_on(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    producer: AIOKafkaProducer,
    new_consumer: NewConsumer,
) -> None:
    topic = catalogue.name("calls.requests")
    bad = await producer.send_and_wait(
        topic, b"\x07not avro", key=b"k", headers=[("origin", b"test")]
    )
    good = call_requested(1)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish(good, key=b"k")  # same key: same partition, after the bad one
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], f"g-{uuid.uuid4().hex}"
    ) as sub:
        got = await _take(sub, 1)
        assert sub.dead_lettered == 1
    assert got[0].event.event_id == good.event_id

    dlt = await new_consumer(catalogue.name("calls.dlt"))
    records = []
    for _ in range(20):
        for batch in (await dlt.getmany(timeout_ms=500)).values():
            records.extend(batch)
        if records:
            break
    assert len(records) == 1
    record = records[0]
    assert (record.key, record.value) == (b"k", b"\x07not avro")
    hdrs = dict(record.headers)
    assert hdrs[headers.DLT_ORIGINAL_TOPIC] == topic.encode()
    assert hdrs[headers.DLT_ORIGINAL_PARTITION] == str(bad.partition).encode()
    assert hdrs[headers.DLT_ORIGINAL_OFFSET] == str(bad.offset).encode()
    assert hdrs[headers.DLT_ORIGINAL_TIMESTAMP] == str(bad.timestamp).encode()
    assert hdrs[headers.DLT_REASON]
    assert hdrs[headers.DLT_ERROR_CLASS]
    assert hdrs["origin"] == b"test"


async def test_transaction_aborts_everything_inside(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    kept, dropped = call_requested(1), call_requested(2)
    tx = f"tx-{uuid.uuid4().hex}"
    async with Publisher(kafka_settings, codec, catalogue, transactional_id=tx) as publisher:

        async def change_mind_midway() -> None:
            async with publisher.transaction():
                await publisher.publish(dropped)
                raise RuntimeError("caller changed its mind")

        with pytest.raises(RuntimeError):
            await change_mind_midway()
        async with publisher.transaction():
            await publisher.publish(kept)
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], None, stop_at_end=True
    ) as sub:
        seen = [r.event.event_id async for r in sub]
    assert seen == [kept.event_id]


async def test_idempotence_filter_drops_redeliveries(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    event = call_requested(1)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish(event)
        await publisher.publish(event)  # a retried publish: same event id twice in the log
    seen = IdempotenceFilter()
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], None, stop_at_end=True
    ) as sub:
        fresh = [r for r in [r async for r in sub] if seen.first_time(r)]
    assert [r.event.event_id for r in fresh] == [event.event_id]


def test_sync_publisher_for_scripts(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    with SyncPublisher(kafka_settings, schema_registry, catalogue) as publisher:
        one = publisher.publish(call_requested(1))
        two = publisher.publish_many([call_requested(2), call_requested(3)])
    assert one.topic == catalogue.name("calls.requests")
    assert len(two) == 2
    assert all(c.offset >= 0 for c in two)


async def test_leaving_the_loop_and_iterating_again_skips_nothing(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    events = [call_requested(i) for i in range(5)]
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        for event in events:
            await publisher.publish(event, key=b"one-partition")
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], None, stop_at_end=True
    ) as sub:
        first = await _take(sub, 2)  # one fetch brings all five; the loop leaves after two
        rest = [r async for r in sub]
    assert [r.event.event_id for r in first + rest] == [e.event_id for e in events]
