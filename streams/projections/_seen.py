"""Remembered event ids, packed: sorted blocks of 16-byte ids per task and expiry bucket.

The dedupe window remembers every applied event id until its expiry (event time + window). One
SQLite row and index entry per id cost about 4.5 us a record to write (docs/monitoring.md);
here the ids of a task whose expiries fall in one :data:`BUCKET_MS` bucket are kept as sorted
blocks of 16-byte ids (a uuid's bytes): one row and one changelog record per block, looked up by
binary search. A redelivered event carries its ``occurred_at``, so its id is looked up in the
one bucket of its own expiry. Eviction drops whole buckets: a bucket goes once all of its
expiries are below the newest expiry minus the window (ids may so be remembered up to one
bucket longer than the window, never shorter). The live runner adds a block per bucket per
checkpoint (at most :data:`BLOCK_IDS` ids each) and merges a bucket's blocks once it holds
:data:`MERGE_AT` of them, so a lookup reads a few blocks.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streams.projections._model import SEEN_PREFIX

if TYPE_CHECKING:  # the store imports this module
    from streams.projections._store import SqliteStore

#: width of an expiry bucket (event time)
BUCKET_MS = 60_000
#: bytes of one id in a block
ID_SIZE = 16
#: ids per block at most (256 KiB: well within Kafka's default 1 MB record)
BLOCK_IDS = 16_384
#: a bucket's live blocks are merged when it holds this many
MERGE_AT = 8
#: changelog key of a block: ``__seen_block__/<bucket>/<part>`` (value: the block's bytes)
BLOCK_PREFIX = "__seen_block__/"


#: one block of a task's remembered ids: (bucket, part, legacy, sorted packed ids)
Block = tuple[int, int, bool, bytes]


@dataclass
class SeenWrites:
    """Changes to a task's remembered ids: blocks added, blocks dropped."""

    put: list[Block] = field(default_factory=list)
    #: (bucket, part) of blocks gone (evicted, merged or tombstoned)
    drop: list[tuple[int, int]] = field(default_factory=list)


def bucket_of(expires_ms: int) -> int:
    return expires_ms // BUCKET_MS


def evicted_below(newest_expires_ms: int, window_ms: int) -> int:
    """Buckets below this one are evicted: every expiry in them is below ``newest - window``
    (the runner evicted an id whose expiry was below that before the blocks)."""
    return (newest_expires_ms - window_ms) // BUCKET_MS


def id_bytes(event_id: str) -> bytes:
    """An event id's 16 bytes: the uuid's (any other text: a 16-byte digest of it)."""
    if len(event_id) == 36:
        try:
            return bytes.fromhex(event_id.replace("-", ""))
        except ValueError:
            pass
    try:
        return uuid.UUID(event_id).bytes
    except ValueError:
        return hashlib.blake2b(event_id.encode(), digest_size=ID_SIZE).digest()


def pack(event_ids: Iterable[str]) -> list[bytes]:
    """The blocks holding ``event_ids`` (each sorted; ids in order across blocks)."""
    ids = list(event_ids)
    packed = pack_uuids(ids)  # canonical lower-case uuids, the common case: at once
    if packed is not None:
        return split(packed)
    return pack_bytes(map(id_bytes, ids))


def python_pack_uuids(ids: list[str]) -> bytes | None:
    """The 16 bytes of each id, sorted, as one bytes; None unless every id is a canonical
    (lower-case, dashed) uuid string."""
    joined = "".join(ids)
    n = len(ids)
    if (
        all(len(event_id) == 36 for event_id in ids)
        and all(joined[at::36] == "-" * n for at in (8, 13, 18, 23))
        and joined == joined.lower()
    ):
        try:
            packed = bytes.fromhex(joined.replace("-", ""))
        except ValueError:
            return None
        if len(packed) == ID_SIZE * n:
            return b"".join(sorted(unpack(packed)))
    return None


def pack_bytes(ids: Iterable[bytes]) -> list[bytes]:
    """The blocks holding ``ids`` (16 bytes each), duplicates dropped."""
    return split(b"".join(sorted(set(ids))))


def split(packed: bytes) -> list[bytes]:
    """Sorted packed ids as blocks of at most :data:`BLOCK_IDS` ids."""
    step = BLOCK_IDS * ID_SIZE
    return [packed[at : at + step] for at in range(0, len(packed), step)]


def unpack(block: bytes) -> list[bytes]:
    return [block[at : at + ID_SIZE] for at in range(0, len(block), ID_SIZE)]


def contains(block: bytes, key: bytes) -> bool:
    """Whether the sorted ``block`` holds the 16-byte ``key`` (binary search)."""
    lo, hi = 0, len(block) // ID_SIZE
    while lo < hi:
        mid = (lo + hi) >> 1
        at = mid * ID_SIZE
        if block[at : at + ID_SIZE] < key:
            lo = mid + 1
        else:
            hi = mid
    at = lo * ID_SIZE
    return block[at : at + ID_SIZE] == key


def block_key(bucket: int, part: int) -> str:
    return f"{BLOCK_PREFIX}{bucket}/{part}"


def parse_block_key(key: str) -> tuple[int, int] | None:
    """``(bucket, part)`` of a block's changelog key; None for any other key."""
    if not key.startswith(BLOCK_PREFIX):
        return None
    bucket, _, part = key[len(BLOCK_PREFIX) :].partition("/")
    return int(bucket), int(part)


def legacy_key(key: bytes) -> str:
    """The changelog key an id had before blocks (one record per id): ``__seen__/<uuid>``."""
    return SEEN_PREFIX + str(uuid.UUID(bytes=key))


def blocks_of(remembered: Mapping[str, int]) -> list[Block]:
    """``(bucket, part, legacy, ids)`` blocks holding event ids and their expiries, by bucket,
    parts numbered from 0 (a rebuild's, a restore's: a fresh bucket)."""
    buckets: dict[int, list[str]] = {}
    for event_id, expires in remembered.items():
        bucket = expires // BUCKET_MS
        found = buckets.get(bucket)
        if found is None:
            buckets[bucket] = [event_id]
        else:
            found.append(event_id)
    return [
        (bucket, part, False, ids)
        for bucket in sorted(buckets)
        for part, ids in enumerate(pack(buckets[bucket]))
    ]


def checkpoint_changes(
    store: SqliteStore, task: int, new_ids: Mapping[str, int], window_ms: int
) -> tuple[SeenWrites, list[tuple[str, bytes | None]]]:
    """What a live checkpoint does to a task's remembered ids, and the changelog records of it.

    The batch's ids (event id -> expiry) go in a new block per bucket (numbered after the
    bucket's others); a bucket that would then hold :data:`MERGE_AT` blocks has them merged
    into one (or a few full ones), the old ones tombstoned. Buckets wholly below the newest
    expiry minus the window are evicted: a block's key is tombstoned, or, for a legacy block,
    each id's own key (its changelog records are the per-id records of version 0).
    """
    writes, records = SeenWrites(), list[tuple[str, bytes | None]]()
    below = evicted_below(max(new_ids.values()), window_ms)
    for bucket, part, legacy in store.blocks_below(task, below):
        writes.drop.append((bucket, part))
        if legacy is None:
            records.append((block_key(bucket, part), None))
        else:
            records.extend((legacy_key(key), None) for key in unpack(legacy))
    buckets: dict[int, list[str]] = {}
    for event_id, expires in new_ids.items():
        if (bucket := expires // BUCKET_MS) >= below:  # else evicted at once
            buckets.setdefault(bucket, []).append(event_id)
    for bucket, event_ids in sorted(buckets.items()):
        part = store.next_part(task, bucket)
        added = pack(event_ids)
        live = [(p, ids) for p, legacy, ids in store.block_parts(task, bucket) if not legacy]
        if len(live) + len(added) >= MERGE_AT:
            for p, _ in live:
                writes.drop.append((bucket, p))
                records.append((block_key(bucket, p), None))
            kept = (key for _, ids in live for key in unpack(ids))
            added = pack_bytes([*kept, *map(id_bytes, event_ids)])
        for ids in added:
            writes.put.append((bucket, part, False, ids))
            records.append((block_key(bucket, part), ids))
            part += 1
    return writes, records


try:  # built by `make install`; without it, the Python packing (same bytes, more CPU)
    from streams._compiled import pack_uuids as _compiled_pack
except ImportError:  # pragma: no cover - a checkout where the extension was not built
    pack_uuids = python_pack_uuids
else:
    pack_uuids = _compiled_pack
