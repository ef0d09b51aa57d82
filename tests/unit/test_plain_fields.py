"""The fields readers (the compiled one, and the same plan run in Python) read what the plain
reader reads, for the fields they keep, and refuse truncated or corrupt structure with a typed
error (never a hang or a huge allocation)."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams._plain_avro import PlainReadError, Read, plain_reader
from streams._plain_fields import FieldsReader, fields_reader, plan, python_fields_reader
from streams.events import EVENT_TYPES, Event
from streams.events._avro import to_avro_builder
from tests.strategies import sample

BUILD = "the compiled fields reader is not built: run `make install` (or `.venv/bin/python -m infra.build_ext`)"


def compiled_fields_reader(schema: Any, fields: frozenset[str] | set[str]) -> Read:
    assert FieldsReader is not None, BUILD
    return FieldsReader(*plan(schema, fields)).read


def python_reader(schema: Any, fields: frozenset[str] | set[str]) -> Read:
    return python_fields_reader(*plan(schema, fields))


#: every test runs on both readers
READERS = pytest.mark.parametrize(
    "reader_of",
    [compiled_fields_reader, python_reader],
    ids=["compiled", "python"],
)

ALL = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)
#: what reading corrupt bytes may raise (the codec turns each into CorruptPayload)
TYPED = (PlainReadError, IndexError, struct.error, UnicodeDecodeError)


def _encoded(cls: type[Event], n: int) -> bytes:
    buffer = io.BytesIO()
    event = sample(cls, n)
    fastavro.schemaless_writer(
        buffer, fastavro.parse_schema(cls.avro_schema()), to_avro_builder(cls)(event)
    )
    return buffer.getvalue()


def _subsets(cls: type[Event]) -> list[frozenset[str]]:
    names = [f["name"] for f in cls.avro_schema()["fields"]]
    rng = random.Random(cls.event_type)
    return [
        frozenset(names),
        frozenset(),
        *(frozenset({name}) for name in names),
        *(frozenset(rng.sample(names, len(names) // 2)) for _ in range(4)),
    ]


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.event_type)
@READERS
def test_kept_fields_equal_the_plain_reader_and_the_end_is_the_same(
    cls: type[Event], reader_of: Callable[..., Read]
) -> None:
    schema = cls.avro_schema()
    whole = plain_reader(schema)
    for n in (1, 70, 300):  # short and long strings and numbers (one- and many-byte varints)
        data = _encoded(cls, n)
        expected, end = whole(data, 0)
        assert end == len(data)
        for fields in _subsets(cls):
            got, got_end = reader_of(schema, fields)(data, 0)
            assert got == {k: v for k, v in expected.items() if k in fields}, sorted(fields)
            assert got_end == end


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.event_type)
@READERS
def test_every_truncation_is_refused(cls: type[Event], reader_of: Callable[..., Read]) -> None:
    schema = cls.avro_schema()
    data = _encoded(cls, 70)
    for fields in (frozenset(), frozenset({"event_id", "occurred_at"})):
        read = reader_of(schema, fields)
        for cut in range(len(data)):
            with pytest.raises(TYPED):  # skipped text past the end included
                read(data[:cut], 0)


@settings(max_examples=300, deadline=2_000, database=None)
@given(
    index=st.integers(0, len(ALL) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=4),
)
def test_flipped_bits_read_the_same_or_are_refused(
    index: int, flips: list[tuple[int, int]]
) -> None:
    cls = ALL[index]
    schema = cls.avro_schema()
    data = bytearray(_encoded(cls, 70))
    for at, bit in flips:
        data[at % len(data)] ^= 1 << bit
    fields = frozenset(f["name"] for f in schema["fields"][::2])
    whole: Any
    try:
        whole = plain_reader(schema)(bytes(data), 0)
    except TYPED:
        whole = None
    for reader_of in (compiled_fields_reader, python_reader):
        try:
            part = reader_of(schema, fields)(bytes(data), 0)
        except TYPED:
            # a refusal is typed; and only of what the plain reader refuses too
            assert whole is None, bytes(data)
            continue
        if whole is not None:  # both accept (the fields reader may take bad text it skips)
            kept = {k: v for k, v in whole[0].items() if k in fields}
            assert repr(part) == repr((kept, whole[1])), bytes(data)  # repr: NaN equals itself


@pytest.mark.parametrize(
    "varint",
    [
        *(b"\xff" * 9 + b"\x01", b"\xff" * 10, b"\x80" * 9 + b"\x7f", b"\xff" * 11),
        *(b"\xfe\xff\x03", b"\x81\x01", b"\x80\x00", b"\xff\x7f"),  # 3 and 2 bytes
        # 8 bytes (a timestamp, read as one 64-bit number), 7 and 9
        *(b"\xff" * 7 + b"\x7f", b"\x80" * 7 + b"\x01", b"\x80" * 7 + b"\x00"),
        *(b"\xab\xcd\xef\x91\xa3\xb5\xc7\x5a", b"\xff" * 6 + b"\x7f", b"\xff" * 8 + b"\x01"),
    ],
)
@READERS
def test_a_long_reads_as_the_plain_reader_reads_it_or_is_refused_alike(
    varint: bytes, reader_of: Callable[..., Read]
) -> None:
    cls = EVENT_TYPES["call.succeeded"]
    schema = cls.avro_schema()
    data = _encoded(cls, 1)
    _, after_id = plain_reader(schema["fields"][0]["type"])(data, 0)
    _, after_at = plain_reader(schema["fields"][1]["type"])(data, after_id)
    crafted = data[:after_id] + varint + data[after_at:]  # in place of occurred_at
    outcomes: list[object] = []
    for read in (plain_reader(schema), reader_of(schema, {"occurred_at"})):
        try:
            datum, end = read(crafted, 0)
            outcomes.append((datum["occurred_at"], end))
        except TYPED as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[0] == outcomes[1]


_UUID_RECORD = {
    "type": "record",
    "name": "U",
    "fields": [{"name": "id", "type": {"type": "string", "logicalType": "uuid"}}],
}


@pytest.mark.parametrize(
    "text",
    [
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a10",  # canonical: read inline
        "6A0B8F55-5C1E-4D55-9A53-0D5F3B1F7A10",  # 36 characters, upper case: normalised
        "{6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a10}",  # another length: normalised
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1z",  # 36 characters, not a uuid: refused
        "6a0b8f555c1e-4d55-9a53-0d5f3b1f7a10-",  # 36, dashes misplaced: normalised
        "6a0b8f55-5c1e-4d55-9a530-d5f3b1f7a10",  # 36, the last dash misplaced: normalised
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1\u00e9",  # 36 characters, not ASCII: refused
        "not a uuid",
    ],
)
@READERS
def test_a_uuid_reads_as_the_plain_reader_reads_it_or_is_refused_alike(
    text: str, reader_of: Callable[..., Read]
) -> None:
    raw = text.encode()
    data = bytes([len(raw) << 1]) + raw
    read = reader_of(_UUID_RECORD, {"id"})
    whole = plain_reader(_UUID_RECORD)
    try:
        expected: Any = whole(data, 0)
    except PlainReadError:
        with pytest.raises(PlainReadError):
            read(data, 0)
        return
    assert read(data, 0) == expected
    for cut in range(len(data)):  # truncated: refused by both
        with pytest.raises((PlainReadError, IndexError)):
            read(data[:cut], 0)


def test_the_codec_reads_with_the_compiled_reader() -> None:
    assert FieldsReader is not None, BUILD
    read = fields_reader(ALL[0].avro_schema(), {"event_id"})
    assert isinstance(getattr(read, "__self__", None), FieldsReader)


_TEXT_RECORD = {
    "type": "record",
    "name": "T",
    "fields": [{"name": "text", "type": "string"}, {"name": "n", "type": "long"}],
}


@READERS
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"plain ascii",
        b"\x00nul inside",
        "é, 日本, 🙂".encode(),
        b"\xff\xfe",
        b"ok\xc3",
        b"\xed\xa0\x80",
    ],
    ids=["empty", "ascii", "nul", "utf-8", "invalid", "cut", "surrogate"],
)
def test_text_reads_as_the_plain_reader_reads_it_or_is_refused_alike(
    raw: bytes, reader_of: Callable[..., Read]
) -> None:
    data = bytes([len(raw) << 1]) + raw + b"\x02"
    try:
        expected: Any = plain_reader(_TEXT_RECORD)(data, 0)
    except (PlainReadError, UnicodeDecodeError):
        with pytest.raises((PlainReadError, UnicodeDecodeError)):
            reader_of(_TEXT_RECORD, {"text"})(data, 0)
        return
    assert reader_of(_TEXT_RECORD, {"text", "n"})(data, 0) == expected


@pytest.mark.parametrize(
    "steps",
    [
        [("long", 1, None)],  # a slot beyond the kept fields
        [("enum", 0, ["A"])],  # symbols not a tuple
        [("optional", 0, -1), ("long", 0, None)],
        [("closure", 0, None)],
        [("nothing", 0, None)],
    ],
)
def test_the_compiled_reader_refuses_a_plan_it_cannot_run_safely(steps: list[Any]) -> None:
    assert FieldsReader is not None, BUILD
    with pytest.raises((ValueError, KeyError)):
        FieldsReader(steps, ["x"])
