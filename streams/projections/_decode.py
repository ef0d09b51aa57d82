"""The per-record steps of a plain projection's read, as tight loops over a fetched run.

- :func:`read_plain`: a record of a known schema read by its fields reader into a
  :class:`PlainRecord` (None for anything else: the runner's full path takes it);
- :func:`decode_run`: the rebuild's loop over one partition's records: the checkpoint moved,
  records below it skipped, the others read by :func:`read_plain` (stops at the first it cannot
  read, so the caller's full path, which may await, takes that one);
- :func:`dedupe_run`: the rebuild's drop of event ids already seen, in the batch or in the
  task's remembered ids (same expiry bucket).

Each has a compiled twin in ``streams/_compiled.pyx`` (used when it is built, ``make install``);
these Python ones are what runs without it and the reference the tests hold the twins to
(tests/unit/projections/test_decode_run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord

from streams._plain_avro import Read
from streams.codec import HEADER_SIZE
from streams.events import Event
from streams.projections._model import PlainRecord

#: the 5-byte wire header (magic byte 0, schema id) -> (event type, our reader of the body)
Readers = dict[bytes, tuple[type[Event], Read]]
#: ``PlainRecord(...)`` without the named tuple's Python-level ``__new__``
_plain_record: Callable[[type[PlainRecord], tuple[Any, ...]], PlainRecord] = tuple.__new__


def python_read_plain(
    record: ConsumerRecord[bytes, bytes],
    readers: Readers,
    max_payload: int,
    plain_type: type[PlainRecord],
) -> PlainRecord | None:
    data = record.value
    if data is None or not HEADER_SIZE < (size := len(data)) <= max_payload:
        return None
    own = readers.get(data[:HEADER_SIZE])
    if own is None:
        return None
    try:
        datum, end = own[1](data, HEADER_SIZE)
    except Exception:  # the full path raises the codec's error for it
        return None
    if end != size:
        return None
    return _plain_record(
        plain_type,
        (own[0], datum, record.topic, record.partition, record.offset, record.timestamp),
    )


def python_decode_run(
    records: list[ConsumerRecord[bytes, bytes]],
    i: int,
    end: int,
    at: int,
    readers: Readers,
    max_payload: int,
    plain_type: type[PlainRecord],
    run: list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]],
) -> tuple[int, int, int, int]:
    """From ``records[i]``: ``(where it stopped, checkpoint, records counted, of which below the
    checkpoint)``. It stops at the end of the list, at a record at or past ``end`` (not
    counted), or at one :func:`read_plain` cannot read (counted, the checkpoint past it)."""
    count = duplicates = 0
    n = len(records)
    while i < n:
        record = records[i]
        offset = record.offset
        if offset >= end:
            return i, at, count, duplicates
        count += 1
        if offset < at:
            duplicates += 1
            i += 1
            continue
        at = offset + 1
        plain = python_read_plain(record, readers, max_payload, plain_type)
        if plain is None:
            return i, at, count, duplicates
        run.append((record, plain))
        i += 1
    return n, at, count, duplicates


def python_dedupe_run(
    run: list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]],
    window_ms: int,
    bucket_ms: int,
    ids: dict[str, int],
    seen: dict[str, int],
    todo: list[PlainRecord],
) -> int:
    """Add ``run``'s records whose event id is new to ``todo`` and their expiry to ``seen``;
    how many were dropped. An id is known when ``seen`` or ``ids`` holds it with an expiry in
    the same bucket as this record's (``occurred_at`` in ms + the window)."""
    duplicates = 0
    for _, plain in run:
        datum = plain.datum
        event_id = datum["event_id"]
        expires = datum["occurred_at"] // 1000 + window_ms
        found = seen.get(event_id)
        if found is None or found // bucket_ms != expires // bucket_ms:
            found = ids.get(event_id)
            if found is None or found // bucket_ms != expires // bucket_ms:
                seen[event_id] = expires
                todo.append(plain)
                continue
        duplicates += 1
    return duplicates


try:  # built by `make install`; without it, the Python loops above
    from streams import _compiled
except ImportError:  # pragma: no cover - a checkout where the extension was not built
    read_plain = python_read_plain
    decode_run = python_decode_run
    dedupe_run = python_dedupe_run
else:
    read_plain = _compiled.read_plain
    decode_run = _compiled.decode_run
    dedupe_run = _compiled.dedupe_run
