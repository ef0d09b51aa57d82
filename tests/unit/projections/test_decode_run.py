"""The compiled loops of a plain projection's read (``streams/_compiled.pyx``) do what their Python
twins in ``streams.projections._decode`` do: the same plain records, checkpoints, counts and
stops, the same ids dropped, on runs with every case (records below the checkpoint and at or past
the end, unknown schemas, corrupt or trailing bytes, no value, duplicates in the run and in the
remembered ids, in the same expiry bucket and in another)."""

from __future__ import annotations

import io
import random
from typing import Any

import fastavro
import pytest
from aiokafka import ConsumerRecord

from streams import _compiled
from streams._plain_fields import plan, python_fields_reader
from streams.codec import HEADER_SIZE
from streams.events import EVENT_TYPES
from streams.events._avro import to_avro_builder
from streams.projections import PlainRecord
from streams.projections._decode import (
    Readers,
    python_decode_run,
    python_dedupe_run,
    python_read_plain,
)
from streams.projections._seen import BUCKET_MS
from tests.strategies import sample

KINDS = [EVENT_TYPES["call.succeeded"], EVENT_TYPES["call.failed"]]
FIELDS = {"event_id", "occurred_at", "service", "latency_ms", "error_class"}
MAX_PAYLOAD = 4_096


def _readers() -> Readers:
    return {
        b"\x00" + (n + 1).to_bytes(4, "big"): (
            cls,
            python_fields_reader(*plan(cls.avro_schema(), FIELDS)),
        )
        for n, cls in enumerate(KINDS)
    }


def _body(cls: Any, n: int) -> bytes:
    buffer = io.BytesIO()
    schema = fastavro.parse_schema(cls.avro_schema())
    fastavro.schemaless_writer(buffer, schema, to_avro_builder(cls)(sample(cls, n)))
    return buffer.getvalue()


def _records(rng: random.Random, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    bodies = [(n, _body(cls, i)) for n, cls in enumerate(KINDS) for i in range(1, 12)]
    out = []
    offset = 100
    for _ in range(count):
        n, body = rng.choice(bodies)
        good = b"\x00" + (n + 1).to_bytes(4, "big") + body
        value: bytes | None = good
        roll = rng.random()
        if roll < 0.05:
            value = b"\x00\x00\x00\x00\x09" + body  # a schema id with no reader
        elif roll < 0.08:
            value = good[:-3]  # cut short
        elif roll < 0.10:
            value = good + b"\x00"  # bytes after the record
        elif roll < 0.11:
            value = None
        elif roll < 0.12:
            value = b"\x01" + good[1:]  # another magic byte
        elif roll < 0.13:
            value = good + bytes(MAX_PAYLOAD)  # too large
        offset += rng.choice((1, 1, 1, 2))
        out.append(ConsumerRecord("t", 3, offset, offset * 10, 0, None, value, None, 0, 0, []))
    return out


def test_the_compiled_loops_are_built() -> None:
    from streams.projections import _decode

    assert _decode.decode_run is _compiled.decode_run, (
        "the compiled loops are not built: run `make install`"
        " (or `.venv/bin/python -m infra.build_ext`)"
    )


@pytest.mark.parametrize("seed", range(6))
def test_read_plain_is_its_python_twin(seed: int) -> None:
    readers = _readers()
    for record in _records(random.Random(seed), 300):
        expected = python_read_plain(record, readers, MAX_PAYLOAD, PlainRecord)
        got = _compiled.read_plain(record, readers, MAX_PAYLOAD, PlainRecord)
        assert got == expected
        assert type(got) is type(expected)


@pytest.mark.parametrize("seed", range(6))
def test_decode_run_is_its_python_twin(seed: int) -> None:
    rng = random.Random(seed)
    records = _records(rng, 400)
    readers = _readers()
    end = records[rng.randrange(300, 400)].offset  # records at or past it are not taken
    for start_at in (0, records[50].offset, records[-1].offset + 5):
        outcomes = []
        for loop in (python_decode_run, _compiled.decode_run):
            run: list[Any] = []
            steps = []
            i, at = 0, start_at
            while i < len(records):
                i, at, counted, below = loop(records, i, end, at, readers, MAX_PAYLOAD,
                                             PlainRecord, run)  # fmt: skip
                steps.append((i, at, counted, below))
                if i == len(records) or records[i].offset >= end:
                    break
                i += 1  # the caller's full path takes the one it stopped at
            outcomes.append((steps, run))
        assert outcomes[0] == outcomes[1]
        if start_at == 0:
            assert len(outcomes[0][0]) > 1  # it stopped on records it could not read
            assert outcomes[0][1]  # and read the others


@pytest.mark.parametrize("seed", range(6))
def test_dedupe_run_is_its_python_twin(seed: int) -> None:
    rng = random.Random(seed)
    window = 3_600_000
    ids_pool = [f"id-{n}" for n in range(60)]
    run = []
    for n in range(400):
        at_ms = rng.choice((10, 20, 70)) * BUCKET_MS // 1000 * 1000 + rng.randrange(0, 59_000)
        datum = {"event_id": rng.choice(ids_pool), "occurred_at": at_ms * 1000}
        run.append((None, PlainRecord(KINDS[0], datum, "t", 0, n, 0)))
    remembered = {i: rng.choice((10, 20, 30)) * BUCKET_MS + window + 5 for i in ids_pool[:30]}
    outcomes = []
    for loop in (python_dedupe_run, _compiled.dedupe_run):
        ids, seen, todo = dict(remembered), {}, []  # type: ignore[var-annotated]
        dropped = loop(run, window, BUCKET_MS, ids, seen, todo)
        outcomes.append((dropped, seen, todo, ids))
    assert outcomes[0] == outcomes[1]
    assert 0 < outcomes[0][0] < len(run)
    assert outcomes[0][3] == remembered  # the remembered ids are read, not written


def test_header_size_is_the_compiled_loops() -> None:
    assert HEADER_SIZE == 5  # the compiled read_plain's _HEADER
