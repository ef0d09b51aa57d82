"""Partner teams read and write our topics with confluent-kafka's standard Avro serdes.

Both directions go through the real broker and our registry: Backbone's codec -> Kafka ->
confluent-kafka's ``AvroDeserializer``, and confluent-kafka's ``AvroSerializer`` -> Kafka ->
Backbone's codec.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from infra.contract import render
from infra.testing.pytest_plugin import NewConsumer, NewTopic, unique
from streams.codec import Codec, subject_for
from streams.events import EVENT_TYPES, Event
from streams.events.calls import CallRequested
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.strategies import sample

pytestmark = pytest.mark.integration

ALL = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)


def _consume_with_confluent(
    kafka: KafkaSettings, registry: RegistrySettings, topic: str, count: int
) -> list[tuple[bytes | None, Any]]:
    with SchemaRegistryClient({"url": registry.url}) as client:
        return _poll(kafka, AvroDeserializer(client), topic, count)


def _poll(
    kafka: KafkaSettings, deserializer: AvroDeserializer, topic: str, count: int
) -> list[tuple[bytes | None, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": unique("partner"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, Any]] = []
    try:
        for _ in range(300):
            message = consumer.poll(0.2)
            if message is None:
                if len(out) >= count:
                    break
                continue
            assert message.error() is None, message.error()
            ctx = SerializationContext(topic, MessageField.VALUE)
            out.append((message.key(), deserializer(message.value(), ctx)))
            if len(out) >= count:
                break
    finally:
        consumer.close()
    return out


async def test_confluent_deserializer_reads_what_backbone_wrote(
    codec: Codec,
    producer: AIOKafkaProducer,
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    new_topic: NewTopic,
) -> None:
    topic = await new_topic(stem="interop-out")
    written: list[Event] = [sample(cls, n) for n, cls in enumerate(ALL)]
    for event in written:
        await producer.send_and_wait(topic, await codec.encode(event, topic), key=event.key())

    read = await asyncio.to_thread(
        _consume_with_confluent, kafka_settings, schema_registry, topic, len(written)
    )
    assert len(read) == len(written)
    for event, (key, datum) in zip(written, read, strict=True):
        assert key == event.key()
        # fastavro (inside confluent-kafka) maps logical types back to UUID and aware datetimes.
        assert datum == event.model_dump(), event.event_type
        assert type(event).model_validate(datum) == event


def _produce_with_confluent(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topic: str,
    schema: str,
    data: list[dict[str, Any]],
) -> None:
    with SchemaRegistryClient({"url": registry.url}) as client:
        _produce(kafka, client, topic, schema, data)


def _produce(
    kafka: KafkaSettings,
    client: SchemaRegistryClient,
    topic: str,
    schema: str,
    data: list[dict[str, Any]],
) -> None:
    serializer = AvroSerializer(
        client,
        schema,
        conf={
            "auto.register.schemas": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    partner = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
    for datum in data:
        value = serializer(datum, SerializationContext(topic, MessageField.VALUE))
        partner.produce(topic, value=value, key=str(datum["call_id"]).encode())
    assert partner.flush(30) == 0


async def test_backbone_reads_what_confluent_serializer_wrote(
    codec: Codec,
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    new_topic: NewTopic,
    new_consumer: NewConsumer,
) -> None:
    topic = await new_topic(stem="interop-in")
    events = [sample(CallRequested, n) for n in range(5)]
    # The partner writes with its own copy of our .avsc (as published), from plain dicts.
    data = [e.model_dump(mode="json") | {"event_id": e.event_id} for e in events]
    for datum, event in zip(data, events, strict=True):
        datum["occurred_at"] = event.occurred_at
        datum["deadline"] = event.deadline
    await asyncio.to_thread(
        _produce_with_confluent, kafka_settings, schema_registry, topic, render(CallRequested), data
    )
    consumer = await new_consumer(topic)
    decoded: list[Event] = []
    async with asyncio.timeout(30):
        while len(decoded) < len(events):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                decoded += [await codec.decode(r.value) for r in records if r.value is not None]
    assert decoded == events
    # It registered under the same subject Backbone uses, so ids are shared, not duplicated.
    assert await codec.schema_id(CallRequested, topic) == int.from_bytes(
        (await _first_value(new_consumer, topic))[1:5], "big"
    )


async def _first_value(new_consumer: NewConsumer, topic: str) -> bytes:
    consumer = await new_consumer(topic)
    async with asyncio.timeout(30):
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                if records and isinstance(records[0].value, bytes):
                    return records[0].value


async def test_partner_with_an_older_schema_is_read_as_todays_model(
    codec: Codec,
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    new_topic: NewTopic,
    new_consumer: NewConsumer,
) -> None:
    # A partner still on a release without `reply_to` and `timeout_ms`.
    topic = await new_topic(stem="interop-old")
    old = json.loads(render(CallRequested))
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("reply_to", "timeout_ms")]
    event = sample(CallRequested, 3).model_copy(update={"reply_to": None, "timeout_ms": None})
    datum = {k: v for k, v in event.model_dump().items() if k not in ("reply_to", "timeout_ms")}
    await asyncio.to_thread(
        _produce_with_confluent, kafka_settings, schema_registry, topic, json.dumps(old), [datum]
    )
    consumer = await new_consumer(topic)
    async with asyncio.timeout(30):
        while True:
            records = [r for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs]
            if records:
                break
    assert records[0].value is not None
    assert await codec.decode(records[0].value) == event
    assert subject_for(topic, CallRequested) == f"{topic}-io.backbone.calls.CallRequested"
    assert Catalogue().for_event("call.requested").name == "calls.requests"
