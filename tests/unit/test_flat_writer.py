"""The compiled writer of flat records writes the bytes fastavro writes, for every event type's
schema it covers, and refuses (so the codec uses fastavro) whatever it cannot write as fastavro
would."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from streams._flat_writer import flat_writer
from streams.codec import HEADER, Codec
from streams.events import EVENT_TYPES
from streams.events.calls import CallStarted

COVERED = sorted(t for t, c in EVENT_TYPES.items() if flat_writer(c.avro_schema()) is not None)
TEXTS = ["", "a", "x" * 63, "y" * 64, "z" * 300, "héllo ✓ 𝄞", "\x00nul"]
LONGS = [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**63 - 1, -(2**63), 123_456_789]


def _value(schema: Any, rng: random.Random) -> Any:
    if isinstance(schema, list):
        return None if rng.random() < 0.4 else _value(next(s for s in schema if s != "null"), rng)
    if isinstance(schema, dict):
        if schema.get("logicalType") == "uuid":
            return uuid.UUID(int=rng.getrandbits(128)) if rng.random() < 0.5 else str(uuid.uuid4())
        if schema.get("logicalType") == "timestamp-micros":
            at = datetime(1960, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(52))
            return at.astimezone(UTC) if rng.random() < 0.5 else rng.choice(LONGS)
        if schema["type"] == "enum":
            return rng.choice(schema["symbols"])
        return _value(schema["type"], rng)
    makers: dict[str, Callable[[], Any]] = {
        "null": lambda: None,
        "boolean": lambda: rng.random() < 0.5,
        "int": lambda: rng.choice([0, 1, -1, 64, -65, 2**31 - 1, -(2**31)]),
        "long": lambda: rng.choice(LONGS),
        "float": lambda: rng.choice([0.0, 1.5, -2.25, 3]),
        "double": lambda: rng.choice([0.0, 0.1, -1e300, 7, float("inf")]),
        "string": lambda: rng.choice(TEXTS),
        "bytes": lambda: rng.randbytes(rng.choice([0, 5, 70])),
    }
    return makers[schema]()


def _fastavro(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), datum)
    return buffer.getvalue()


def test_the_call_path_s_events_are_covered() -> None:
    assert {"call.started", "call.succeeded", "call.failed", "call.retry_scheduled"} <= set(COVERED)


@pytest.mark.parametrize("event_type", COVERED)
def test_the_same_bytes_as_fastavro(event_type: str) -> None:
    schema = EVENT_TYPES[event_type].avro_schema()
    write = flat_writer(schema)
    assert write is not None
    rng = random.Random(event_type)
    for _ in range(200):
        datum = {f["name"]: _value(f["type"], rng) for f in schema["fields"]}
        assert write(datum) == _fastavro(schema, datum), datum


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ("long", 2**63),
        ("long", 1.5),
        ("int", 2**31),
        ("string", b"bytes"),
        ("string", 3),
        ("boolean", 1),
        ("double", "1.0"),
        (["null", "string"], 3),
        (["null", "long"], "3"),
        ({"type": "long", "logicalType": "timestamp-micros"}, datetime(2026, 1, 1)),  # naive
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "B"),
    ],
)
def test_what_it_cannot_write_as_fastavro_would_is_refused(schema: Any, value: Any) -> None:
    write = flat_writer({"type": "record", "name": "R", "fields": [{"name": "f", "type": schema}]})
    assert write is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - any error: the codec then asks fastavro
        write({"f": value})
    with pytest.raises(KeyError):
        write({})


def test_nested_and_other_types_are_left_to_fastavro() -> None:
    for schema in (
        {"type": "array", "items": "string"},
        {"type": "map", "values": "long"},
        {"type": "record", "name": "N", "fields": [{"name": "x", "type": "long"}]},
        ["null", "string", "long"],
        {"type": "int", "logicalType": "date"},
    ):
        assert (
            flat_writer({"type": "record", "name": "R", "fields": [{"name": "f", "type": schema}]})
            is None
        )


def test_the_codec_falls_back_to_fastavro_for_a_datum_it_refuses() -> None:
    codec = Codec(registry=None)  # type: ignore[arg-type]  # encoding a known id asks no registry
    codec._writer(CallStarted)
    codec._headers[7] = HEADER.pack(0, 7)
    fields: dict[str, Any] = {
        "call_id": "c",
        "service": "s",
        "attempt": 0,
        "idempotency_key": "k",
        "claim_id": "x",
        "lane_topic": "calls.lane.normal",
        "lane_partition": 0,
        "lane_offset": 5,
        "worker": "w",
    }
    schema = CallStarted.avro_schema()
    aware = CallStarted(**fields)
    assert codec._encode(7, aware) == HEADER.pack(0, 7) + _fastavro(schema, aware.__dict__)
    naive = CallStarted.model_construct(**fields, occurred_at=datetime(2026, 1, 1))
    expected = _fastavro(schema, naive.__dict__)  # fastavro reads it as local time
    assert codec._encode(7, naive) == HEADER.pack(0, 7) + expected
