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

import contextlib
import gc
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams._aiokafka_compat import close_producer
from streams._backoff import learn_topics_together
from streams._kafka_errors import translate
from streams.admin import partitions
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import BackboneError
from streams.events import Event
from streams.projections._model import CHECKPOINT_KEY, JSON, PlainRecord, Projection
from streams.projections._runner import ProjectionRunner, TaskView, store_path
from streams.projections._seen import BUCKET_MS, block_key, evicted_below
from streams.projections._store import SqliteStore
from streams.projections.errors import ApplyFailed, ProjectionError
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
    #: processes that rebuilt it (1: this one)
    workers: int = 1

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
    workers: int | None = None,
) -> RebuildReport:
    """Recompute ``projection`` from its sources; with ``swap`` replace the live store and changelog.

    Events the projection emits while rebuilding are not published again (the live run did);
    ``on_emit`` sees them. ``workers``: processes that rebuild the tasks in parallel (tasks
    share no state, so each builds its own and the parts are copied into one store); default
    one (this process): on the only box measured, two were slower (docs/monitoring.md).
    """
    began = time.perf_counter()
    live = store_path(store_dir, projection.name)
    fresh_path = live.with_name(f"{projection.name}.rebuild.sqlite")
    _remove(fresh_path)
    fresh = SqliteStore(fresh_path, durable=False)  # a crash discards it: no journal, no fsync
    sources = [catalogue.name(t) for t in projection.sources]
    try:
        try:
            plan = await _plan(kafka, sources, since_ms)
        except KafkaError as exc:
            raise translate(exc, f"rebuilding projection {projection.name}") from exc
        count = _workers(workers, plan)
        if count > 1:
            # imported here: it imports this module
            from streams.projections._parallel import rebuild_in_parts

            tally = await rebuild_in_parts(
                kafka, codec, catalogue, projection, fresh, plan, count,
                batch=batch, progress=progress, on_emit=on_emit, began=began,
            )  # fmt: skip
        else:
            tally = await build_part(
                kafka, codec, catalogue, projection, fresh, plan,
                batch=batch, progress=progress, on_emit=on_emit, began=began,
            )  # fmt: skip
        keys = fresh.count()
        if swap:
            await _rewrite_changelog(kafka, catalogue.name(projection.changelog), live, fresh)
    finally:
        fresh.close()
    if swap:
        _swap(fresh_path, live)
    return RebuildReport(
        projection.name,
        tally.records,
        tally.applied,
        tally.failed,
        keys,
        time.perf_counter() - began,
        live if swap else fresh_path,
        count,
    )


@dataclass(frozen=True)
class Plan:
    """What a rebuild reads: every source partition from ``starts`` up to ``ends``."""

    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[tp] - at) for tp, at in self.starts.items())

    @property
    def tasks(self) -> list[int]:
        return sorted({tp.partition for tp in self.starts})

    def of_tasks(self, tasks: Collection[int]) -> Plan:
        chosen = [tp for tp in self.starts if tp.partition in tasks]
        return Plan({tp: self.starts[tp] for tp in chosen}, {tp: self.ends[tp] for tp in chosen})


@dataclass(frozen=True)
class Tally:
    records: int
    applied: int
    failed: int
    emitted: tuple[Event, ...] = ()


def _workers(asked: int | None, plan: Plan) -> int:
    return max(1, min(asked or 1, len(plan.tasks)))


async def _plan(kafka: KafkaSettings, sources: list[str], since_ms: int | None) -> Plan:
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-rebuild",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=kafka.request_timeout_ms,
    )
    learn_topics_together(consumer)
    try:
        await consumer.start()
        found = await partitions(kafka, sources)
        tps = [TopicPartition(t, p) for t in sources for p in found[t]]
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        if since_ms is None:
            starts = dict(begins)
        else:
            times = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: (t.offset if t is not None else ends[tp]) for tp, t in times.items()}
        return Plan(starts, dict(ends))
    finally:
        await consumer.stop()


async def build_part(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    projection: Projection,
    fresh: SqliteStore,
    plan: Plan,
    *,
    batch: int,
    progress: Callable[[Progress], None] | None,
    on_emit: Callable[[Event], None] | None,
    began: float,
) -> Tally:
    """Read the plan's partitions into memory, apply them, write the state into ``fresh``."""
    store_dir = fresh.path.parent
    # the runner's own apply path (dedupe, checkpoint key), without Kafka clients
    applier = ProjectionRunner(kafka, codec, catalogue, projection, store_dir, dead_letters=False)
    applier._store = fresh
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-rebuild",
        enable_auto_commit=False,
        isolation_level="read_committed",
        # the fetcher resets a freshly assigned partition by this strategy on its own; an answer
        # arriving after our seek would be taken for it (see _start_at), so it must agree
        auto_offset_reset="earliest",
        max_poll_records=batch,
        request_timeout_ms=kafka.request_timeout_ms,
    )
    views: dict[int, _MemoryView] = {}
    with _collector_paused():
        records = await _read_part(
            consumer, applier, projection, fresh, plan, views, batch, progress, on_emit, began
        )
        window = projection.dedupe_window_ms
        for view in views.values():
            view.forget_expired(window)
        fresh.load(
            {t: v.pending for t, v in views.items()}, {t: v.expiries for t, v in views.items()}
        )
    counts = applier._uncommitted
    return Tally(records, counts["applied"], counts["dead_lettered"])


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a rebuild reads and writes its state.

    The state (a dict per remembered event id, the windows...) only grows and holds no cycles,
    yet every full collection walks all of it again: about 15 % of a rebuild's CPU, measured
    (docs/monitoring.md). The records read are freed by reference counting either way; the
    few cycles made meanwhile are collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _read_part(
    consumer: AIOKafkaConsumer,
    applier: ProjectionRunner,
    projection: Projection,
    fresh: SqliteStore,
    plan: Plan,
    views: dict[int, _MemoryView],
    batch: int,
    progress: Callable[[Progress], None] | None,
    on_emit: Callable[[Event], None] | None,
    began: float,
) -> int:
    """Read the plan's partitions and apply them into ``views``; how many records were read."""
    records = 0
    try:
        await consumer.start()
        consumer.assign(list(plan.starts))
        await _start_at(consumer, plan.starts)
        ends = plan.ends
        todo = {tp for tp, at in plan.starts.items() if at < ends[tp]}
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1_000, max_records=batch)
            for tp, recs in fetched.items():
                view = views.get(tp.partition)
                if view is None:
                    view = views[tp.partition] = _MemoryView(fresh, tp.partition)
                records += await _apply_all(applier, view, recs, ends[tp], on_emit)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            if progress is not None:
                progress(Progress(records, plan.total, time.perf_counter() - began))
    except KafkaError as exc:
        raise translate(exc, f"rebuilding projection {projection.name}") from exc
    finally:
        await consumer.stop()
    return records


class _MemoryView(TaskView):
    """A task of a rebuild: the fresh store starts empty, so the whole state lives in ``pending``
    (no store reads) and is written once, at the end, in one transaction. Remembered event ids
    are kept as ``event id -> expires_ms`` and written as the blocks the runner writes."""

    def __init__(self, store: SqliteStore, task: int) -> None:
        super().__init__(store, task)
        #: remembered event ids -> their expiry, in event time
        self.expiries: dict[str, int] = {}

    def get(self, key: str) -> JSON | None:
        return self.pending.get(key)

    def known(self, event_id: str, expires_ms: int) -> bool:
        found = self.expiries.get(event_id)
        return found is not None and found // BUCKET_MS == expires_ms // BUCKET_MS

    def remembered_ids(self) -> dict[str, int]:
        return self.expiries

    def remember(self, expiries: Mapping[str, int]) -> None:
        self.expiries.update(expiries)

    def forget_expired(self, window_ms: int | None) -> None:
        """Drop remembered event ids the live runner would have evicted by now: those of the
        buckets wholly below the newest expiry minus the window."""
        expiries = self.expiries
        if window_ms is None or not expiries:
            return
        below = evicted_below(max(expiries.values()), window_ms)
        if min(expiries.values()) // BUCKET_MS >= below:  # none expired: no copy of them all
            return
        self.expiries = {k: e for k, e in expiries.items() if e // BUCKET_MS >= below}


async def _apply_all(
    applier: ProjectionRunner,
    view: TaskView,
    records: list[ConsumerRecord[bytes, bytes]],
    end: int,
    on_emit: Callable[[Event], None] | None,
) -> int:
    """Apply a fetched run of one partition's records below ``end``; how many were taken.

    The runner's per-record steps (checkpoint, decode, dedupe by event id, apply, remember the
    id) as loops over the run (``streams.projections._decode``, compiled when built): decoding
    awaits only for a schema id not seen before, the checkpoint is moved once per run, and a
    failure is counted, not dead-lettered (the live run did that).
    """
    if not applier.projection.reads_plain:
        return await _apply_events(applier, view, records, end, on_emit)
    if not records:
        return 0
    topic = records[0].topic  # a run is one partition of one topic
    begun = at = int((view.get(CHECKPOINT_KEY) or {}).get(topic, 0))
    count = duplicates = failed = 0
    run: list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]] = []
    i, n = 0, len(records)
    try:
        while i < n:
            # checkpoint, skip and read by the known readers, up to a record they cannot read
            i, at, counted, below = applier.decode_plain_run(records, i, end, at, run)
            count += counted
            duplicates += below
            if i == n or records[i].offset >= end:
                break
            record = records[i]  # counted, the checkpoint past it: the full path reads it
            i += 1
            try:
                plain = applier.decode_plain_cached(record) or await applier.decode_plain(record)
            except BackboneError as exc:
                if exc.retriable:
                    raise
                failed += 1
                continue
            run.append((record, plain))
        # dedupe by event id and one batch apply (one by one if it raises); a failure is
        # counted, not dead-lettered (the live run did that)
        emitted, failures = applier.apply_plain_run(view, run)
        failed += len(failures)
        if on_emit is not None:
            for event in emitted:
                on_emit(event)
    finally:
        if at > begun:
            view.checkpoint()[topic] = at
        counts = applier._uncommitted
        counts["duplicates"] += duplicates
        counts["dead_lettered"] += failed
    return count


async def _apply_events(
    applier: ProjectionRunner,
    view: TaskView,
    records: list[ConsumerRecord[bytes, bytes]],
    end: int,
    on_emit: Callable[[Event], None] | None,
) -> int:
    """:func:`_apply_all` for a projection that reads decoded events."""
    count = 0
    decode_cached = applier._codec.decode_cached
    for record in records:
        if record.offset >= end:
            break
        count += 1
        if not applier.advance(view, record):
            continue
        outcome: Sequence[Event] | ApplyFailed
        try:
            event = decode_cached(record.value or b"") or await applier.decode(record)
            outcome = applier.apply_event(view, record, event)
        except BackboneError as exc:
            if exc.retriable:
                raise
            applier._uncommitted["dead_lettered"] += 1
            continue
        if isinstance(outcome, ApplyFailed):
            applier._uncommitted["dead_lettered"] += 1
        elif on_emit is not None:
            for emitted in outcome:
                on_emit(emitted)
    return count


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
    """The changelog keys a store's content stands for (opening a version-0 store migrates it)."""
    if not path.exists():
        return set()
    store = SqliteStore(path)
    try:
        return store.changelog_keys()
    finally:
        store.close()


def _records_of(fresh: SqliteStore) -> Iterator[tuple[int, str, bytes]]:
    """``(task, key, value)`` changelog records of a rebuilt store: state rows (the JSON text
    the runner would write), then the blocks of remembered ids."""
    for task, key, text in fresh.rows():
        yield task, key, text.encode()
    for task, bucket, part, _, ids in fresh.seen_rows():  # a rebuilt store has no legacy block
        yield task, block_key(bucket, part), ids


async def _rewrite_changelog(
    kafka: KafkaSettings, changelog: str, live: Path, fresh: SqliteStore
) -> None:
    """Make the changelog say what the fresh store holds, in one transaction."""
    old_keys = _keys_of(live)
    producer = AIOKafkaProducer(
        **client_options(kafka),
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
            for task, key, value in _records_of(fresh):
                new_keys.add((task, key))
                futures.append(
                    (task, await producer.send(changelog, value, key=key.encode(), partition=task))
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
