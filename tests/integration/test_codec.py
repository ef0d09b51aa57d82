from __future__ import annotations

import json
import struct

import pytest

from streams.codec import HEADER_SIZE, Codec, subject_for
from streams.errors import (
    CodecError,
    CorruptPayload,
    InvalidMagicByte,
    PayloadTooLarge,
    SchemaResolutionError,
    UnknownEventType,
    UnknownSchemaId,
)
from streams.events import EVENT_TYPES, Event
from streams.events.calls import CallRequested, Priority
from streams.projections import PlainRecord
from streams.registry_client import RegistryClient
from streams.settings import RegistrySettings
from tests.strategies import sample

pytestmark = pytest.mark.integration

ALL = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)


def _call(**overrides: object) -> CallRequested:
    fields: dict[str, object] = {
        "call_id": "c-1",
        "service": "openai",
        "operation": "chat",
        "payload": '{"q": 1}',
        "priority": Priority.HIGH,
        "idempotency_key": "idem-1",
    }
    return CallRequested.model_validate(fields | overrides)


async def test_every_event_type_round_trips_through_the_codec(codec: Codec) -> None:
    for n, cls in enumerate(ALL):
        event = sample(cls, n)
        data = await codec.encode(event, "it.codec")
        assert data[0] == 0
        (schema_id,) = struct.unpack(">I", data[1:5])
        assert schema_id == await codec.schema_id(cls, "it.codec")
        decoded = await codec.decode(data)
        assert decoded == event, cls.event_type
        assert type(decoded) is cls
        assert codec.decode_plain(data) == (cls, PlainRecord.datum_of(event)), cls.event_type


async def test_schemas_are_registered_under_topic_and_record_name(
    codec: Codec, schema_registry: RegistrySettings
) -> None:
    event = _call()
    data = await codec.encode(event, "it.subjects")
    async with RegistryClient(schema_registry) as client:
        latest = await client.version(subject_for("it.subjects", CallRequested))
        assert latest.subject == "it.subjects-io.backbone.calls.CallRequested"
        assert latest.id == struct.unpack(">I", data[1:5])[0]
        assert json.loads(latest.schema) == CallRequested.avro_schema()


async def test_a_fresh_codec_decodes_by_schema_id_and_caches_it(
    codec: Codec, schema_registry: RegistrySettings
) -> None:
    event = _call()
    data = await codec.encode(event, "it.fresh")
    async with RegistryClient(schema_registry) as client:
        other = Codec(client)
        assert other.decode_cached(data) is None
        assert await other.decode(data) == event
        assert other.decode_cached(data) == event
        assert other.encode_cached(event, "it.fresh") is None
        assert await other.encode(event, "it.fresh") == data
        assert other.encode_cached(event, "it.fresh") == data


async def test_old_writer_schema_decodes_into_the_current_model(
    schema_registry: RegistrySettings,
) -> None:
    # A record written before `reply_to` and `timeout_ms` existed: they take their defaults.
    old = CallRequested.avro_schema()
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("reply_to", "timeout_ms")]
    current = _call(reply_to="x", timeout_ms=5)
    import io

    import fastavro

    body = io.BytesIO()
    datum = {k: v for k, v in current.__dict__.items() if k not in ("reply_to", "timeout_ms")}
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), datum)
    async with RegistryClient(schema_registry) as client:
        schema_id = await client.register("it.old-io.backbone.calls.CallRequested", old)
        codec = Codec(client)
        data = struct.pack(">bI", 0, schema_id) + body.getvalue()
        decoded = await codec.decode(data)
        plain = codec.decode_plain(data)  # resolved by fastavro, to today's schema
    assert plain == (CallRequested, PlainRecord.datum_of(decoded))
    assert isinstance(decoded, CallRequested)
    assert decoded.reply_to is None
    assert decoded.timeout_ms is None
    assert decoded.call_id == current.call_id
    assert decoded.priority is Priority.HIGH


async def test_bad_bytes_raise_typed_non_retriable_errors(
    codec: Codec, schema_registry: RegistrySettings
) -> None:
    good = await codec.encode(_call(), "it.bad")
    cases: list[tuple[bytes, type[CodecError]]] = [
        (b"", CorruptPayload),
        (b"\x00\x00", CorruptPayload),
        (b"\x01" + good[1:], InvalidMagicByte),
        (b"\x00\x7f\xff\xff\xf0" + good[HEADER_SIZE:], UnknownSchemaId),
        (good[:-3], CorruptPayload),
        (good + b"\x00", CorruptPayload),
        (good[:HEADER_SIZE] + b"\xff" * 20, CorruptPayload),
    ]
    for data, error in cases:
        with pytest.raises(error) as raised:
            await codec.decode(data)
        assert raised.value.retriable is False, data
    small = Codec(codec.registry, max_payload_bytes=32)
    with pytest.raises(PayloadTooLarge):
        await small.decode(good)
    with pytest.raises(PayloadTooLarge):
        await small.encode(_call(payload="x" * 100), "it.bad")

    async with RegistryClient(schema_registry) as client:
        foreign = {"type": "record", "name": "x.Other", "fields": [{"name": "a", "type": "long"}]}
        foreign_id = await client.register("it.foreign-x.Other", foreign)
        with pytest.raises(UnknownEventType):
            await codec.decode(struct.pack(">bI", 0, foreign_id) + b"\x02")
        # Same name, incompatible shape: `payload` written as a long.
        clash = CallRequested.avro_schema()
        for field in clash["fields"]:
            if field["name"] == "payload":
                field["type"] = "long"
        clash_id = await client.register("it.clash-io.backbone.calls.CallRequested", clash)
        with pytest.raises((SchemaResolutionError, CorruptPayload)):
            await codec.decode(struct.pack(">bI", 0, clash_id) + good[HEADER_SIZE:])


async def test_events_share_ids_across_topics_with_the_same_schema(codec: Codec) -> None:
    a = await codec.schema_id(CallRequested, "it.ids.a")
    b = await codec.schema_id(CallRequested, "it.ids.b")
    assert a == b  # one id per schema text, whatever the subject


def test_sample_events_exist_for_every_type() -> None:
    for cls in ALL:
        assert isinstance(sample(cls), Event)


async def test_only_registered_event_types_can_be_encoded(codec: Codec) -> None:
    class Unregistered(CallRequested):
        """Not in the catalogue: no event_type of its own."""

    event = Unregistered(call_id="c", service="s", operation="o", payload="{}", idempotency_key="k")
    with pytest.raises(UnknownEventType):
        await codec.encode(event, "it.unregistered")
