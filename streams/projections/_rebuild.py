"""Rebuilding a projection from its sources into fresh state, then swapping it in atomically.

The fresh store is built next to the live one (``<name>.rebuild.sqlite``), from the beginning of
the sources (or from ``since``), up to the end offsets seen when the rebuild started. Then the
changelog is rewritten to match it in one Kafka transaction (tombstones for keys that are gone,
every key of the new state), and the file replaces the live store with one ``os.replace``.
Run it while the projection's workers are stopped (a running worker would keep writing to the
store it has open). Records that fail to apply are counted, not dead-lettered again (the
live run already did).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams._aiokafka_compat import close_producer
from streams._kafka_errors import translate
from streams.admin import partitions
from streams.codec import Codec
from streams.events import Event
from streams.projections._model import Projection
from streams.projections._runner import ProjectionRunner, TaskView, store_path
from streams.projections._store import SqliteStore, encode
from streams.projections.errors import ProjectionError
from streams.settings import KafkaSettings
from streams.topics import Catalogue


@dataclass(frozen=True)
class Progress:
    records: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.records) / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class RebuildReport:
    name: str
    records: int
    applied: int
    failed: int
    keys: int
    seconds: float
    path: Path

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    projection: Projection,
    store_dir: Path,
    *,
    since_ms: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    swap: bool = True,
    batch: int = 10_000,
    on_emit: Callable[[Event], None] | None = None,
) -> RebuildReport:
    """Recompute ``projection`` from its sources; with ``swap`` replace the live store and changelog.

    Events the projection emits while rebuilding are not published again (the live run did);
    ``on_emit`` sees them.
    """
    began = time.perf_counter()
    live = store_path(store_dir, projection.name)
    fresh_path = live.with_name(f"{projection.name}.rebuild.sqlite")
    _remove(fresh_path)
    fresh = SqliteStore(fresh_path)
    # the runner's own apply path (dedupe, checkpoint key), without Kafka clients
    applier = ProjectionRunner(kafka, codec, catalogue, projection, store_dir, dead_letters=False)
    applier._store = fresh
    sources = [catalogue.name(t) for t in projection.sources]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        client_id=f"{kafka.client_id}-rebuild",
        enable_auto_commit=False,
        isolation_level="read_committed",
        # the fetcher resets a freshly assigned partition by this strategy on its own; an answer
        # arriving after our seek would be taken for it (see _start_at), so it must agree
        auto_offset_reset="earliest",
        max_poll_records=batch,
        request_timeout_ms=kafka.request_timeout_ms,
    )
    records = 0
    try:
        await consumer.start()
        found = await partitions(kafka, sources)
        tps = [TopicPartition(t, p) for t in sources for p in found[t]]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        if since_ms is None:
            starts = dict(begins)
        else:
            times = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: (t.offset if t is not None else ends[tp]) for tp, t in times.items()}
        await _start_at(consumer, starts)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        todo = {tp for tp in tps if starts[tp] < ends[tp]}
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1_000, max_records=batch)
            views: dict[int, TaskView] = {}
            for tp, recs in fetched.items():
                for record in recs:
                    if record.offset >= ends[tp]:
                        continue
                    view = views.get(tp.partition) or views.setdefault(
                        tp.partition, TaskView(fresh, tp.partition)
                    )
                    for event in await applier.apply_record(view, record):
                        if on_emit is not None:
                            on_emit(event)
                    records += 1
            fresh.commit_many({t: v.pending for t, v in views.items()}, {})
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            if progress is not None:
                progress(Progress(records, total, time.perf_counter() - began))
    except KafkaError as exc:
        fresh.close()
        raise translate(exc, f"rebuilding projection {projection.name}") from exc
    finally:
        await consumer.stop()
    keys = sum(1 for _ in fresh.items())
    if swap:
        await _rewrite_changelog(kafka, catalogue.name(projection.changelog), live, fresh)
    fresh.close()
    if swap:
        _swap(fresh_path, live)
    counts = applier._uncommitted
    return RebuildReport(
        projection.name,
        records,
        counts["applied"],
        counts["dead_lettered"],
        keys,
        time.perf_counter() - began,
        live if swap else fresh_path,
    )


async def _start_at(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int]) -> None:
    """Position every partition at an explicit offset, and check it holds.

    Not ``seek_to_beginning``: right after ``assign`` aiokafka's fetcher sends its own offset
    lookup (by ``auto_offset_reset``), and if that answer lands after ``seek_to_beginning`` it
    is applied to the pending reset; with the default ``latest`` the rebuild started at the end
    and swapped in an empty store. An explicit ``seek`` clears the pending reset, so a late
    answer is ignored.
    """
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    for tp, offset in starts.items():
        if (at := await consumer.position(tp)) != offset:
            raise ProjectionError(f"rebuild of {tp.topic}/{tp.partition} at {at}, not {offset}")


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def _swap(fresh: Path, live: Path) -> None:
    # the fresh file is closed and checkpointed (no -wal left); the live store's leftovers must go
    # before the rename, or SQLite would replay the old write-ahead log onto the new file
    with sqlite3.connect(fresh) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    for leftover in (Path(f"{live}-wal"), Path(f"{live}-shm")):
        leftover.unlink(missing_ok=True)
    os.replace(fresh, live)


def _keys_of(path: Path) -> set[tuple[int, str]]:
    if not path.exists():
        return set()
    store = SqliteStore(path)
    try:
        return {(t, k) for t, k, _ in store.items()}
    finally:
        store.close()


async def _rewrite_changelog(
    kafka: KafkaSettings, changelog: str, live: Path, fresh: SqliteStore
) -> None:
    """Make the changelog say what the fresh store holds, in one transaction."""
    old_keys = _keys_of(live)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        client_id=f"{kafka.client_id}-rebuild",
        acks="all",
        enable_idempotence=True,
        transactional_id=f"{kafka.client_id}.rebuild.{changelog}",
        request_timeout_ms=kafka.request_timeout_ms,
    )
    last: dict[int, int] = {}
    try:
        await producer.start()
        async with producer.transaction():
            futures = []
            new_keys = set()
            for task, key, value in fresh.items():
                new_keys.add((task, key))
                futures.append(
                    (
                        task,
                        await producer.send(
                            changelog, encode(value).encode(), key=key.encode(), partition=task
                        ),
                    )
                )
            for task, key in sorted(old_keys - new_keys):
                futures.append(
                    (task, await producer.send(changelog, None, key=key.encode(), partition=task))
                )
        for task, future in futures:
            last[task] = max(last.get(task, 0), (await future).offset + 1)
    except KafkaError as exc:
        raise translate(exc, f"rewriting {changelog}") from exc
    finally:
        await close_producer(producer, 2 * kafka.request_timeout_ms / 1000)
    fresh.commit_many({}, last)
