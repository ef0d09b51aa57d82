"""Restoring a task of a projection's store from its changelog partition.

The changelog holds, per task, every state key (JSON text), the blocks of remembered event ids
(``__seen_block__/<bucket>/<part>``, the block's bytes) and, from stores of version 0, one
record per remembered id (``__seen__/<event id>`` -> ``{"expires_ms": n}``), with tombstones.
All three are understood: per-id records become legacy blocks (:mod:`streams.projections._seen`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.connection import client_options
from streams.projections._model import JSON, SEEN_PREFIX
from streams.projections._seen import BLOCK_PREFIX, SeenWrites, id_bytes, parse_block_key
from streams.projections._store import SqliteStore, decode
from streams.projections.errors import RestoreFailed
from streams.settings import KafkaSettings


async def restore_task(kafka: KafkaSettings, store: SqliteStore, changelog: str, task: int) -> int:
    """Read changelog partition ``task`` from the store's position to its end into the store."""
    tp = TopicPartition(changelog, task)
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-restore",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=kafka.request_timeout_ms,
    )
    count = 0
    try:
        await consumer.start()
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = store.changelog_offset(task)
        if start > end:  # the changelog was recreated: our position means nothing there
            store.drop_task(task)
            start = 0
        if start >= end:
            return 0
        consumer.seek(tp, start)
        chunk = _Restored()
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1_000, max_records=10_000)
            for record in batch.get(tp, []):
                chunk.add((record.key or b"").decode(), record.value)
                count += 1
            if chunk.size >= 10_000:
                chunk.commit(store, task, await consumer.position(tp), last=False)
        chunk.commit(store, task, await consumer.position(tp), last=True)
    except KafkaError as exc:
        raise RestoreFailed(f"restoring task {task} from {changelog}: {exc}") from exc
    finally:
        await consumer.stop()
    return count


@dataclass
class _Restored:
    """Changelog records read by a restore, committed in chunks: state values, blocks of
    remembered ids, and the per-id records of remembered ids a version-0 store wrote.

    Per-id records are held (in memory) until the restore's last commit: an id's tombstone
    comes a window after it, and removing ids from blocks already written costs a search of
    every legacy block. While some are held, the chunks' commits leave the store's changelog
    position where it was, so a restore that stops half-way reads them all again.
    """

    state: dict[str, JSON | None] = field(default_factory=dict)
    #: (bucket, part) -> the block (None: a tombstone)
    blocks: dict[tuple[int, int], bytes | None] = field(default_factory=dict)
    #: per-id records: event id -> expires_ms; ids tombstoned (maybe stored before)
    legacy: dict[str, int] = field(default_factory=dict)
    legacy_gone: set[bytes] = field(default_factory=set)
    size: int = 0

    def add(self, key: str, value: bytes | None) -> None:
        self.size += 1
        if key.startswith(BLOCK_PREFIX):
            at = parse_block_key(key)
            if at is not None:
                self.blocks[at] = value
        elif key.startswith(SEEN_PREFIX):
            event_id = key[len(SEEN_PREFIX) :]
            if value is None:
                self.legacy.pop(event_id, None)
                self.legacy_gone.add(id_bytes(event_id))
            else:
                self.legacy[event_id] = int(decode(value)["expires_ms"])
        else:
            self.state[key] = None if value is None else decode(value)

    def commit(self, store: SqliteStore, task: int, next_offset: int, *, last: bool) -> None:
        """Write what was read since the last commit (per-id records: see the class)."""
        seen = SeenWrites(
            put=[(b, p, False, ids) for (b, p), ids in self.blocks.items() if ids is not None],
            drop=[at for at, ids in self.blocks.items() if ids is None],
        )
        if last or not (self.legacy or self.legacy_gone):
            store.commit_restored(
                task, self.state, seen, self.legacy, self.legacy_gone, next_offset
            )
            self.legacy, self.legacy_gone = {}, set()
        else:
            store.commit_restored(task, self.state, seen, {}, (), None)
        self.state, self.blocks, self.size = {}, {}, 0
