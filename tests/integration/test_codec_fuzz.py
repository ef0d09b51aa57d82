"""The decoder against hostile bytes: only typed, non-retriable errors; no crash, hang or blow-up.

The codec is primed with the real registry (every event type's writer schema cached), then fed
random bodies, every truncation, bit flips and crafted varints (huge, negative and extreme length
or count prefixes) spliced in at every position of a valid record.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import HEADER_SIZE, Codec
from streams.errors import CodecError, UnknownSchemaId
from streams.events import EVENT_TYPES, Event
from streams.projections import PlainRecord
from tests.strategies import sample

pytestmark = pytest.mark.integration

ALL = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)
FUZZ = settings(
    max_examples=600,
    deadline=2_000,  # ms per example: a decoder that loops on a huge count would blow it
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


#: what the metrics projection reads of a record (uuid, timestamp, strings, numbers, enums)
SOME_FIELDS = frozenset(
    {"event_id", "occurred_at", "service", "latency_ms", "cost_usd", "status", "current", "body"}
)


def zigzag_varint(n: int) -> bytes:
    """Avro's long encoding, for crafting length and block-count prefixes."""
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


CRAFTED = [
    zigzag_varint(n) for n in (2**62, 2**63 - 1, -1, -(2**63), 2**31, -(2**31), 10**9, 1_048_577)
] + [b"\xff" * 10, b"\x80" * 9 + b"\x7f", b"\xff" * 11]  # over-long varints


def _decode(codec: Codec, data: bytes, *, some_fields: bool = True) -> Event | None:
    """Decode, both ways; a CodecError is an acceptable answer, anything else fails the test.

    What both accept, they read the same. Either may refuse what the other takes: the plain
    reader (``decode_plain``, our own) does not check that a uuid string is a UUID; fastavro
    takes a union branch index of -1 as the last branch."""
    try:
        plain = codec.decode_plain(data)
    except CodecError as exc:
        if exc.retriable:
            raise AssertionError(f"{exc!r} claims to be retriable") from exc
        plain = None
    if some_fields:
        _decode_some(codec, data, plain)
    try:
        event = codec.decode_cached(data)
    except CodecError as exc:
        if exc.retriable:
            raise AssertionError(f"{exc!r} claims to be retriable") from exc
        return None
    assert event is not None, data
    if plain is None:
        return event
    # repr: a NaN read from flipped bits equals itself there
    assert repr(plain) == repr((type(event), PlainRecord.datum_of(event))), data
    return event


def _decode_some(codec: Codec, data: bytes, plain: tuple[type[Event], Any] | None) -> None:
    """Some fields only (a projection's): the others are stepped over, not decoded."""
    try:
        part = codec.decode_plain(data, SOME_FIELDS)
    except CodecError as exc:
        if exc.retriable:
            raise AssertionError(f"{exc!r} claims to be retriable") from exc
        assert plain is None, data  # refused only what the whole read refuses too
        return
    if plain is not None and part is not None:
        kept = {k: v for k, v in plain[1].items() if k in SOME_FIELDS}
        assert repr(part) == repr((plain[0], kept)), data


@pytest.fixture
async def primed(codec: Codec) -> tuple[Codec, list[bytes]]:
    records = [await codec.encode(sample(cls, n), "fuzz") for n, cls in enumerate(ALL)]
    for data in records:
        assert codec.decode_cached(data) is not None
    return codec, records


def test_zigzag_helper_matches_avro() -> None:
    assert zigzag_varint(0) == b"\x00"
    assert zigzag_varint(-1) == b"\x01"
    assert zigzag_varint(1) == b"\x02"
    assert zigzag_varint(64) == b"\x80\x01"


async def test_every_truncation_is_a_typed_error(primed: tuple[Codec, list[bytes]]) -> None:
    codec, records = primed
    for data in records:
        for cut in range(len(data)):
            with pytest.raises(CodecError):
                codec.decode_cached(data[:cut])
            with pytest.raises(CodecError):
                codec.decode_plain(data[:cut])


async def test_crafted_prefixes_at_every_position_stay_bounded(
    primed: tuple[Codec, list[bytes]],
) -> None:
    codec, records = primed
    # Every Avro shape we use: bytes, maps, arrays, nested records, unions, enums, longs.
    shapes = {"webhook.received", "webhook.endpoint_registered", "call.dead_lettered"}
    records = [r for r, cls in zip(records, ALL, strict=True) if cls.event_type in shapes]
    tracemalloc.start()
    decoded = 0
    try:
        for data in records:
            for position in range(HEADER_SIZE, len(data)):
                for varint in CRAFTED:
                    spliced = data[:position] + varint + data[position + len(varint) :]
                    inserted = data[:position] + varint + data[position:]
                    # (the fields reader's lengths: tests/unit/test_plain_fields.py)
                    decoded += _decode(codec, spliced, some_fields=False) is not None
                    decoded += _decode(codec, inserted, some_fields=False) is not None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"decoding crafted input peaked at {peak} bytes"
    # a decode that loops on a crafted length is caught by the test's timeout, not by a clock here
    assert decoded < sum(len(d) for d in records) * len(CRAFTED) * 2  # most of them fail


async def test_random_bodies_raise_only_typed_errors(primed: tuple[Codec, list[bytes]]) -> None:
    codec, records = primed
    headers = sorted({data[:HEADER_SIZE] for data in records})

    @FUZZ
    @given(header=st.sampled_from(headers), body=st.binary(max_size=512))
    def random_body(header: bytes, body: bytes) -> None:
        _decode(codec, header + body)

    @FUZZ
    @given(data=st.sampled_from(records), where=st.integers(0, 10_000), bit=st.integers(0, 7))
    def bit_flip(data: bytes, where: int, bit: int) -> None:
        position = HEADER_SIZE + where % (len(data) - HEADER_SIZE)
        flipped = bytearray(data)
        flipped[position] ^= 1 << bit
        _decode(codec, bytes(flipped))

    @FUZZ
    @given(data=st.sampled_from(records), where=st.integers(0, 10_000), junk=st.binary(max_size=16))
    def spliced_junk(data: bytes, where: int, junk: bytes) -> None:
        position = HEADER_SIZE + where % (len(data) - HEADER_SIZE)
        _decode(codec, data[:position] + junk + data[position + len(junk) :])

    random_body()
    bit_flip()
    spliced_junk()


async def test_unknown_schema_ids_are_typed_errors(primed: tuple[Codec, list[bytes]]) -> None:
    codec, records = primed
    body = records[0][HEADER_SIZE:]
    for schema_id in (0, 2**31 - 1, 2**32 - 1, 123_456):
        with pytest.raises(UnknownSchemaId):
            await codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + body)


async def test_the_runners_inline_decode_reads_or_refuses_as_the_codec(
    primed: tuple[Codec, list[bytes]],
) -> None:
    """``ProjectionRunner.decode_plain_cached`` reads a well-formed record of a known schema
    with the codec's reader directly; on every truncation and single bit flip it gives what
    ``Codec.decode_plain`` gives (the same datum, or the same error)."""
    from aiokafka import ConsumerRecord

    from agents.projections.metrics import MetricsProjection
    from streams.projections import ProjectionRunner
    from streams.settings import KafkaSettings
    from streams.topics import Catalogue

    codec, records = primed
    runner = ProjectionRunner(
        KafkaSettings(bootstrap="127.0.0.1:9", client_id="t"),
        codec,
        Catalogue(prefix="t."),
        MetricsProjection(),
        Path("/nonexistent"),
    )  # fmt: skip  (never started: only its decode is used)
    fields = runner.plain_fields

    def outcome(read: Any, data: bytes) -> str:
        try:
            return repr(read(data))
        except CodecError as exc:
            return f"{type(exc).__name__}: {exc}"

    def by_runner(data: bytes) -> Any:
        record = ConsumerRecord("t", 0, 0, 0, 0, None, data, None, len(data), 0, [])
        found = runner.decode_plain_cached(record)
        return None if found is None else (found.kind, found.datum)

    from agents.projections.metrics import _COUNTED

    read = [r for r, cls in zip(records, ALL, strict=True) if cls in _COUNTED]  # its sources
    assert len(read) == len(_COUNTED)
    compared = 0
    for data in read:
        variants = [data[:cut] for cut in range(len(data))]
        variants += [
            data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]
            for at in range(len(data))
            for bit in (0, 3, 7)
        ]
        for variant in [data, *variants]:
            expected = outcome(lambda d: codec.decode_plain(d, fields), variant)
            assert outcome(by_runner, variant) == expected, variant
            compared += 1
    assert compared > 1_000
