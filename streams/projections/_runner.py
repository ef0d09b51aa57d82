"""Running a projection on Kafka: consume, apply, checkpoint atomically, restore on assignment.

One batch = one Kafka transaction holding the changelog writes, the emitted events and the group's
offsets, followed by one SQLite transaction holding the same state rows and the changelog position.
The source offsets live *in the state* (key ``__checkpoint__``), so they travel in the changelog:
a store restored from the changelog knows where its sources resume, with no full replay.

Crash between the two commits: the Kafka side is ahead; the next start reads the changelog from
the store's position (a few records) and resumes from the restored checkpoint. Crash before the
Kafka commit: the transaction is aborted, the batch is applied again from the old checkpoint.

Nothing here waits on the cluster without a bound: starting, the checkpoint's transaction
(``commit_timeout_s``) and an idle runner's probe of the cluster raise a retriable error when
Kafka does not answer in time. The runner is then stopped and replaced by a fresh one (new
producer, new transactional id; the coordinator aborts the old transaction), which restores and
seeks to the store's checkpoint: :class:`streams.projections.SupervisedProjection` does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from opentelemetry import trace

from streams import headers as h
from streams._aiokafka_compat import close_producer
from streams._dead_letter import DeadLetters
from streams._kafka_errors import translate
from streams.codec import HEADER_SIZE as _HEADER_SIZE
from streams.codec import Codec
from streams.connection import client_options
from streams.consumer import Received
from streams.errors import BackboneError, KafkaUnavailableError, RecordTooLargeError
from streams.events import Event
from streams.follow import stop_quietly
from streams.long_poll import LONG_POLL_MS
from streams.projections._decode import Readers, decode_run, dedupe_run, read_plain
from streams.projections._model import (
    CHECKPOINT_KEY,
    JSON,
    NO_CHANGES,
    Changes,
    PlainRecord,
    Projection,
    group_of,
)
from streams.projections._restore import restore_task
from streams.projections._seen import BUCKET_MS, SeenWrites, checkpoint_changes, contains, id_bytes
from streams.projections._store import SqliteStore, encode
from streams.projections.errors import ApplyFailed, CheckpointFailed
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from streams.tracing import current_traceparent

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("backbone.streams")


@dataclass
class TaskView:
    """One task's state: the store plus this batch's not yet committed writes."""

    store: SqliteStore
    task: int
    pending: dict[str, JSON | None] = field(default_factory=dict)
    #: values read from the store during this batch (None: absent), so each key costs one read
    read: dict[str, JSON | None] = field(default_factory=dict)
    #: event ids remembered by this batch -> their ``expires_ms`` (event time + window)
    new_ids: dict[str, int] = field(default_factory=dict)
    #: blocks of remembered ids read during this batch, per expiry bucket
    blocks: dict[int, list[bytes]] = field(default_factory=dict)
    #: what the checkpoint does to the remembered ids, and their changelog records
    seen_writes: SeenWrites = field(default_factory=SeenWrites)
    seen_records: list[tuple[str, bytes | None]] = field(default_factory=list)

    def get(self, key: str) -> JSON | None:
        if key in self.pending:
            return self.pending[key]
        if key in self.read:
            return self.read[key]
        value = self.read[key] = self.store.get(self.task, key)
        return value

    def known(self, event_id: str, expires_ms: int) -> bool:
        """Whether ``event_id`` is remembered: looked up in the bucket of its expiry (a
        redelivered event has the same event time, so the same expiry)."""
        bucket = expires_ms // BUCKET_MS
        found = self.new_ids.get(event_id)
        if found is not None and found // BUCKET_MS == bucket:
            return True
        blocks = self.blocks.get(bucket)
        if blocks is None:
            blocks = self.blocks[bucket] = self.store.blocks(self.task, bucket)
        if not blocks:
            return False
        key = id_bytes(event_id)
        return any(contains(block, key) for block in blocks)

    def remembered_ids(self) -> dict[str, int] | None:
        """Every remembered event id -> its ``expires_ms``, when this view holds them all in
        one mapping (a rebuild's does: :meth:`known` is then a lookup in it); None: ask
        :meth:`known`."""
        return None

    def remember(self, expiries: Mapping[str, int]) -> None:
        """Remember event ids until their ``expires_ms``."""
        self.new_ids.update(expiries)

    def write(self, changes: Changes) -> None:
        self.pending.update(changes.puts)
        for key in changes.deletes:
            self.pending[key] = None

    def checkpoint(self) -> dict[str, int]:
        """The task's source offsets, as a pending write this view owns (updated in place)."""
        found = self.pending.get(CHECKPOINT_KEY)
        if found is None:
            found = dict(self.get(CHECKPOINT_KEY) or {})
            self.pending[CHECKPOINT_KEY] = found
        return found


@dataclass
class ProjectionStatus:
    """What health and ``backbone projections status`` show about a running projection."""

    name: str
    state: str = "starting"  # starting | restoring | running | failed | stopped
    tasks: tuple[int, ...] = ()
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    restored: int = 0
    last_error: str | None = None
    last_checkpoint_at: float | None = None


def store_path(store_dir: Path, name: str) -> Path:
    return store_dir / f"{name}.sqlite"


class ProjectionRunner:
    """Keeps one projection's store up to date with its sources, as a member of its group."""

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        projection: Projection,
        store_dir: Path,
        *,
        group_id: str | None = None,
        max_records: int = 5_000,
        flush_interval_s: float = 5.0,
        dead_letters: bool = True,
        commit_timeout_s: float | None = None,
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self.projection = projection
        self.group_id = group_id or group_of(kafka, catalogue, projection)
        self._sources = [catalogue.name(t) for t in projection.sources]
        self._changelog = catalogue.name(projection.changelog)
        self._store_path = store_path(store_dir, projection.name)
        wanted = projection.plain_fields
        #: the datum fields decoded for a projection that reads plain records (None: all)
        self.plain_fields = None if wanted is None else frozenset({*wanted, *_RUNNER_FIELDS})
        self._max_records = max_records
        #: the 5-byte wire header (magic byte 0, schema id) -> (event type, our reader of the
        #: body) for decode_plain_cached: one dict lookup by the record's first bytes
        self._own_readers: Readers = {}
        self._max_payload = codec.max_payload_bytes
        self._flush_interval_s = flush_interval_s
        #: bound on one checkpoint's transaction and on starting (default: 2 x request timeout)
        self._commit_timeout_s = commit_timeout_s or 2 * kafka.request_timeout_ms / 1000
        #: monotonic time the cluster last answered this runner (records, a commit, a probe)
        self._last_contact = time.monotonic()
        self._store: SqliteStore | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._dead_letters = DeadLetters(kafka, catalogue)
        self._write_dead_letters = dead_letters
        self._lock = asyncio.Lock()
        #: rebalances seen (on_assigned): a batch fetched before one is followed by a seek
        self._rebalances = 0
        #: why on_assigned failed: aiokafka logs a listener's error and carries on, so the
        #: runner raises it at its next step instead (the supervisor then replaces the runner)
        self.assign_failed: BaseException | None = None
        self._tasks: set[int] = set()
        self._last_flush = time.monotonic()
        self.status = ProjectionStatus(projection.name)
        #: counts of the batch being applied; added to :attr:`status` once it is checkpointed
        self._uncommitted: Counter[str] = Counter()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._store = SqliteStore(self._store_path)
        producer = AIOKafkaProducer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-projection-{self.projection.name}",
            acks="all",
            enable_idempotence=True,
            transactional_id=f"{self.group_id}.{uuid.uuid4().hex[:12]}",
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-projection-{self.projection.name}",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self._max_records,
            request_timeout_ms=self._kafka.request_timeout_ms,
            # the fetch routine's idle wake-ups (seeks and fetches wake it anyway); the fetch wait
            # stays short: the idle probe's end_offsets would queue behind a long poll
            consumer_timeout_ms=LONG_POLL_MS,
        )
        try:
            # bounded: a transactional producer looks for its coordinator for ever
            self._producer, self._consumer = producer, consumer  # stop() closes both, always
            async with asyncio.timeout(self._commit_timeout_s):
                await producer.start()
                await consumer.start()
            consumer.subscribe(self._sources, listener=_Listener(self))
        except KafkaError as exc:
            await self.stop()
            raise _failed(exc, f"starting projection {self.projection.name}") from exc
        except TimeoutError as exc:
            await self.stop()
            raise KafkaUnavailableError(
                f"starting projection {self.projection.name}: Kafka did not answer within "
                f"{self._commit_timeout_s:g} s"
            ) from exc
        except BaseException:
            await self.stop()
            raise
        self._last_contact = time.monotonic()
        self.status.state = "running"

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await stop_quietly(consumer)  # bounded: a shutdown never waits on the cluster
        if producer is not None:
            try:
                await close_producer(producer, self._kafka.request_timeout_ms / 1000)
            except Exception as exc:  # the rest of the teardown still runs
                log.warning("projection %s: closing its producer: %s", self.projection.name, exc)
        await self._dead_letters.stop()
        store, self._store = self._store, None
        if store is not None:
            store.close()
        if self.status.state != "failed":
            self.status.state = "stopped"

    async def run(self) -> None:
        """Start, then process until cancelled; always stops its clients."""
        await self.start()
        try:
            while True:
                await self.step()
        finally:
            await self.stop()

    async def step(self) -> int:
        """Poll once and checkpoint what came; returns the number of records taken."""
        consumer = self._started_consumer()
        if (failed := self.assign_failed) is not None:
            if isinstance(failed, BackboneError):
                raise failed
            raise BackboneError(f"projection {self.projection.name}: taking its tasks") from failed
        rebalances = self._rebalances
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
        except KafkaError as exc:
            raise _failed(exc, f"reading {self._sources}") from exc
        records = [r for rs in batches.values() for r in rs]
        if records:
            self._last_contact = time.monotonic()
        elif time.monotonic() - self._last_contact >= self._flush_interval_s:
            await self.probe()  # aiokafka's consumer retries a lost cluster silently, for ever
        async with self._lock:
            if records:
                await self._process(records)
            if rebalances != self._rebalances:
                # the batch was fetched (from the group's offsets) before on_assigned sought to
                # the store's checkpoints, and was applied after it: without a second seek the
                # consumer would read it all again (each record then counted a duplicate)
                self._seek_to_checkpoints(consumer.assignment())
            if time.monotonic() - self._last_flush >= self._flush_interval_s:
                await self._flush_idle()
        return len(records)

    async def probe(self) -> None:
        """Ask the cluster for the end offsets of the assigned partitions (or for metadata before
        any assignment); :class:`KafkaUnavailableError` when it does not answer in time."""
        consumer = self._started_consumer()
        doing = f"projection {self.projection.name}: probing Kafka"
        try:
            async with asyncio.timeout(self._commit_timeout_s):
                if assigned := list(consumer.assignment()):
                    await consumer.end_offsets(assigned)
                else:
                    await consumer.topics()
        except KafkaError as exc:
            raise KafkaUnavailableError(f"{doing}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise KafkaUnavailableError(
                f"{doing}: no answer within {self._commit_timeout_s:g} s"
            ) from exc
        self._last_contact = time.monotonic()

    # --- processing -----------------------------------------------------------------------------

    def _started_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise BackboneError(f"projection {self.projection.name} is not started")
        return self._consumer

    def _started_store(self) -> SqliteStore:
        if self._store is None:
            raise BackboneError(f"projection {self.projection.name} is not started")
        return self._store

    async def _process(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        store = self._started_store()
        views: dict[int, TaskView] = {}
        emits: list[Event] = []
        self._uncommitted.clear()
        if not self.projection.reads_plain:
            for record in records:
                task = record.partition
                if task not in self._tasks:
                    continue  # revoked while the batch was in flight
                view = views.get(task) or views.setdefault(task, TaskView(store, task))
                emits.extend(await self.apply_record(view, record))
            await self._checkpoint(views, emits)
            return
        # plain records: checkpoint and decode one by one, then one apply per task
        runs: dict[int, list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]]] = {}
        for record in records:
            task = record.partition
            if task not in self._tasks:
                continue  # revoked while the batch was in flight
            view = views.get(task) or views.setdefault(task, TaskView(store, task))
            if not self._advance_fresh(view, record):
                continue
            try:  # awaits only for a schema id not seen before
                plain = self.decode_plain_cached(record) or await self.decode_plain(record)
            except BackboneError as exc:
                if exc.retriable:
                    raise
                await self._dead_letter(record, exc)
                continue
            runs.setdefault(task, []).append((record, plain))
        for task, run in runs.items():
            applied, failed = self.apply_plain_run(views[task], run)
            emits.extend(applied)
            for record, reason in failed:
                await self._dead_letter(record, reason)
        await self._checkpoint(views, emits)

    def _advance_fresh(self, view: TaskView, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Move the task's checkpoint past ``record`` in a fresh dict; False if already applied."""
        # a fresh checkpoint dict per record, as before (the rebuild's in-place `advance` was
        # tried here once, together with another change, and the restart test then failed)
        checkpoint: dict[str, int] = dict(view.get(CHECKPOINT_KEY) or {})
        if record.offset < checkpoint.get(record.topic, 0):
            self._uncommitted["duplicates"] += 1
            return False
        checkpoint[record.topic] = record.offset + 1
        view.pending[CHECKPOINT_KEY] = checkpoint
        return True

    def apply_plain_run(
        self,
        view: TaskView,
        run: list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]],
    ) -> tuple[list[Event], list[tuple[ConsumerRecord[bytes, bytes], ApplyFailed]]]:
        """Apply a task's decoded records in order (dedupe by event id included) with one
        :meth:`Projection.apply_plain_batch`; if that raises, one by one, so each failing
        record is reported alone. The emitted events, and the records that failed with why."""
        window = self.projection.dedupe_window_ms
        todo: list[PlainRecord] = []
        seen: dict[str, int] = {}  # the batch's event ids and their expiry
        duplicates = 0
        if window is None:
            todo = [plain for _, plain in run]
        elif (ids := view.remembered_ids()) is not None:
            # a rebuild's view holds all its remembered ids in one dict: looked up there, as
            # its ``known`` would
            duplicates = dedupe_run(run, window, BUCKET_MS, ids, seen, todo)
        else:
            known = view.known
            seen_get, add = seen.get, todo.append
            for _, plain in run:
                datum = plain.datum
                event_id = datum["event_id"]
                expires = datum["occurred_at"] // 1000 + window
                found = seen_get(event_id)
                if (found is not None and found // BUCKET_MS == expires // BUCKET_MS) or known(
                    event_id, expires
                ):
                    duplicates += 1
                    continue
                seen[event_id] = expires
                add(plain)
        try:
            changes = self.projection.apply_plain_batch(view, todo) if todo else NO_CHANGES
        except Exception:  # one of them fails: find which, apply the others
            return self._apply_one_by_one(view, run)
        view.write(changes)
        view.remember(seen)
        self._uncommitted["duplicates"] += duplicates
        self._uncommitted["applied"] += len(todo)
        return list(changes.emits), []

    def _apply_one_by_one(
        self,
        view: TaskView,
        run: Sequence[tuple[ConsumerRecord[bytes, bytes], PlainRecord]],
    ) -> tuple[list[Event], list[tuple[ConsumerRecord[bytes, bytes], ApplyFailed]]]:
        emits: list[Event] = []
        failed: list[tuple[ConsumerRecord[bytes, bytes], ApplyFailed]] = []
        for record, plain in run:
            outcome = self.apply_plain(view, plain)
            if isinstance(outcome, ApplyFailed):
                failed.append((record, outcome))
            else:
                emits.extend(outcome)
        return emits, failed

    async def apply_record(
        self, view: TaskView, record: ConsumerRecord[bytes, bytes]
    ) -> list[Event]:
        """Apply one source record to ``view`` (dedupe, dead letters, checkpoint key included)."""
        # a fresh checkpoint dict per record, as before (the rebuild's in-place `advance` was
        # tried here once, together with another change, and the restart test then failed)
        checkpoint: dict[str, int] = dict(view.get(CHECKPOINT_KEY) or {})
        if record.offset < checkpoint.get(record.topic, 0):
            self._uncommitted["duplicates"] += 1
            return []
        checkpoint[record.topic] = record.offset + 1
        view.pending[CHECKPOINT_KEY] = checkpoint
        outcome: Sequence[Event] | ApplyFailed
        try:
            if self.projection.reads_plain:  # awaits only for a schema id not seen before
                plain = self.decode_plain_cached(record) or await self.decode_plain(record)
                outcome = self.apply_plain(view, plain)
            else:
                outcome = self.apply_event(view, record, await self.decode(record))
        except BackboneError as exc:
            if exc.retriable:
                raise
            await self._dead_letter(record, exc)
            return []
        if isinstance(outcome, ApplyFailed):
            await self._dead_letter(record, outcome)
            return []
        return list(outcome)

    def advance(self, view: TaskView, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Move the task's checkpoint past ``record``; False if it was already applied."""
        checkpoint = view.get(CHECKPOINT_KEY) or {}
        if record.offset < checkpoint.get(record.topic, 0):
            self._uncommitted["duplicates"] += 1
            return False
        view.checkpoint()[record.topic] = record.offset + 1
        return True

    async def decode(self, record: ConsumerRecord[bytes, bytes]) -> Event:
        data = record.value or b""
        return self._codec.decode_cached(data) or await self._codec.decode(data)

    def decode_plain_cached(self, record: ConsumerRecord[bytes, bytes]) -> PlainRecord | None:
        """The plain form of ``record`` when its schema id is known; None otherwise."""
        # the common case first: a well-formed record of a known schema read by our own reader
        plain = read_plain(record, self._own_readers, self._max_payload, PlainRecord)
        if plain is not None:
            return plain
        data = record.value
        if data is not None and _HEADER_SIZE < len(data) <= self._max_payload and data[0] == 0:
            header = data[:_HEADER_SIZE]
            if header not in self._own_readers:  # only headers with the magic byte 0 are keys
                schema_id = int.from_bytes(data[1:_HEADER_SIZE], "big")
                own = self._codec.own_plain_reader(schema_id, self.plain_fields)
                if own is not None:
                    self._own_readers[header] = own
                    plain = read_plain(record, self._own_readers, self._max_payload, PlainRecord)
                    if plain is not None:
                        return plain
        # anything else: the codec's full path (its error for a record it cannot read)
        found = self._codec.decode_plain(record.value or b"", self.plain_fields)
        if found is None:
            return None
        kind, datum = found
        return PlainRecord(
            kind, datum, record.topic, record.partition, record.offset, record.timestamp
        )

    def decode_plain_run(
        self,
        records: list[ConsumerRecord[bytes, bytes]],
        i: int,
        end: int,
        at: int,
        run: list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]],
    ) -> tuple[int, int, int, int]:
        """``streams.projections._decode.decode_run`` with this runner's readers."""
        return decode_run(
            records, i, end, at, self._own_readers, self._max_payload, PlainRecord, run
        )

    async def decode_plain(self, record: ConsumerRecord[bytes, bytes]) -> PlainRecord:
        plain = self.decode_plain_cached(record)
        if plain is None:
            await self._codec.decode(record.value or b"")  # resolves its schema id, once
            plain = self.decode_plain_cached(record)
            if plain is None:  # pragma: no cover - decode caches every id it resolves
                raise BackboneError(f"schema of {record.topic}@{record.offset} not cached")
        return plain

    def apply_event(
        self, view: TaskView, record: ConsumerRecord[bytes, bytes], event: Event
    ) -> Sequence[Event] | ApplyFailed:
        """Apply a decoded record (dedupe by event id included): its emits, or why it failed."""
        window = self.projection.dedupe_window_ms
        event_id = str(event.event_id)
        expires = int(event.occurred_at.timestamp() * 1000) + (window or 0)
        if window is not None and view.known(event_id, expires):
            self._uncommitted["duplicates"] += 1
            return ()
        received = Received(
            event=event,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            headers=dict(record.headers),
        )
        try:
            changes = self.projection.apply(view, received)
        except Exception as exc:  # any bug in apply: the record goes to its dead letter
            return ApplyFailed(f"{type(exc).__name__}: {exc}")
        view.write(changes)
        if window is not None:
            view.remember({event_id: expires})
        self._uncommitted["applied"] += 1
        return changes.emits

    def apply_plain(self, view: TaskView, record: PlainRecord) -> Sequence[Event] | ApplyFailed:
        """:meth:`apply_event` for a projection that ``reads_plain``."""
        window = self.projection.dedupe_window_ms
        datum = record.datum
        event_id = datum["event_id"]
        expires = datum["occurred_at"] // 1000 + (window or 0)
        if window is not None and view.known(event_id, expires):
            self._uncommitted["duplicates"] += 1
            return ()
        try:
            changes = self.projection.apply_plain(view, record)
        except Exception as exc:  # any bug in apply: the record goes to its dead letter
            return ApplyFailed(f"{type(exc).__name__}: {exc}")
        view.write(changes)
        if window is not None:
            view.remember({event_id: expires})
        self._uncommitted["applied"] += 1
        return changes.emits

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BackboneError
    ) -> None:
        if self._write_dead_letters:
            await self._dead_letters.send(record, error)
        self._uncommitted["dead_lettered"] += 1
        log.warning(
            "projection %s dead-lettered %s/%s@%s: %s",
            self.projection.name,
            record.topic,
            record.partition,
            record.offset,
            error,
        )

    async def _flush_idle(self) -> None:
        self._last_flush = time.monotonic()
        store = self._started_store()
        now_ms = int(time.time() * 1000)
        views: dict[int, TaskView] = {}
        emits: list[Event] = []
        for task in sorted(self._tasks):
            view = TaskView(store, task)
            changes = self.projection.flush(view, now_ms)
            if not changes.empty:
                view.write(changes)
                views[task] = view
                emits.extend(changes.emits)
        if views:
            await self._checkpoint(views, emits)

    def _seen_changes(self, view: TaskView) -> None:
        """The checkpoint's changes to the task's remembered ids and their changelog records
        (``view.seen_writes``, ``view.seen_records``): see :func:`_seen.checkpoint_changes`."""
        window = self.projection.dedupe_window_ms
        if window is not None and view.new_ids:
            view.seen_writes, view.seen_records = checkpoint_changes(
                self._started_store(), view.task, view.new_ids, window
            )

    async def _checkpoint(self, views: dict[int, TaskView], emits: list[Event]) -> None:
        producer = self._producer
        if producer is None:
            raise BackboneError(f"projection {self.projection.name} is not started")
        for view in views.values():
            self._seen_changes(view)
        offsets: dict[TopicPartition, int] = {}
        for view in views.values():
            for topic, offset in (view.pending.get(CHECKPOINT_KEY) or {}).items():
                offsets[TopicPartition(topic, view.task)] = offset
        last: dict[int, tuple[Any, int]] = {}
        doing = f"checkpointing projection {self.projection.name}"
        try:
            with _TRACER.start_as_current_span(f"projection.checkpoint {self.projection.name}"):
                # bounded: with the cluster gone, aiokafka's send_offsets_to_transaction looks
                # for the group coordinator for ever (and its abort waits as long)
                async with asyncio.timeout(self._commit_timeout_s):
                    await self._send_checkpoint(producer, views, emits, offsets, last)
                    positions = {task: (await fut).offset + n for task, (fut, n) in last.items()}
        except KafkaError as exc:
            error = _failed(exc, doing)
            if error.retriable:  # e.g. its sender died on a lost connection mid-transaction
                raise CheckpointFailed(str(error)) from exc
            raise error from exc
        except TimeoutError as exc:
            # the transaction's outcome is unknown and the producer is mid-transaction: only a
            # fresh runner (new producer; restore, then seek to the store's checkpoint) is safe
            raise CheckpointFailed(
                f"{doing}: the transaction did not complete within {self._commit_timeout_s:g} s"
            ) from exc
        self._last_contact = time.monotonic()
        self._started_store().commit_many(
            {t: v.pending for t, v in views.items()},
            positions,
            {t: v.seen_writes for t, v in views.items()},
        )
        self.status.last_checkpoint_at = time.time()
        self.status.applied += self._uncommitted["applied"]
        self.status.duplicates += self._uncommitted["duplicates"]
        self.status.dead_lettered += self._uncommitted["dead_lettered"]
        self._uncommitted.clear()

    async def _send_checkpoint(
        self,
        producer: AIOKafkaProducer,
        views: dict[int, TaskView],
        emits: list[Event],
        offsets: dict[TopicPartition, int],
        last: dict[int, tuple[Any, int]],
    ) -> None:
        """One transaction: the changelog writes, the emitted events, the source offsets.

        Not ``producer.transaction()``: on an error (the caller's timeout included) it awaits
        ``abort_transaction()``, which with the cluster gone waits for ever and swallows that
        timeout's one cancellation. The abort here is bounded; an open transaction left behind
        is aborted by the coordinator (this runner's replacement has a new producer)."""
        await producer.begin_transaction()
        try:
            for view in views.values():
                if view.pending or view.seen_records:
                    last[view.task] = await self._send_changelog(producer, view)
            for event in emits:
                topic = self._catalogue.name(self._catalogue.for_event(event.event_type).name)
                value = self._codec.encode_cached(event, topic) or await self._codec.encode(
                    event, topic
                )
                await producer.send(topic, value, key=event.key(), headers=_headers(event, value))
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):  # best effort, bounded (never a shutdown's wait)
                async with asyncio.timeout(_ABORT_TIMEOUT_S):
                    await producer.abort_transaction()
            raise

    async def _send_changelog(self, producer: AIOKafkaProducer, view: TaskView) -> tuple[Any, int]:
        """Send a task's pending writes to its changelog partition in record batches (a
        ``send`` per record costs several times more: one remembered event id per record);
        the future of the last send and how many records it covers from its offset."""
        last: tuple[Any, int] | None = None
        batch = producer.create_batch()
        state = ((key, _changelog_value(value)) for key, value in view.pending.items())
        for key, value in itertools.chain(state, view.seen_records):
            record = {"key": key.encode(), "value": value, "timestamp": None}
            if batch.append(**record) is not None:
                continue
            if batch.record_count():  # full: it goes first, in order
                last = await self._send_batch(producer, batch, view.task)
            batch = producer.create_batch()
            if batch.append(**record) is None:  # larger than a batch: on its own
                sent = await producer.send(self._changelog, partition=view.task, **record)
                last, batch = (sent, 1), producer.create_batch()
        if batch.record_count():
            last = await self._send_batch(producer, batch, view.task)
        assert last is not None  # the view has pending writes
        return last

    async def _send_batch(
        self, producer: AIOKafkaProducer, batch: Any, task: int
    ) -> tuple[Any, int]:
        """Send a closed batch; its future (the first record's offset) and its record count."""
        batch.close()
        count = batch.record_count()
        return await producer.send_batch(batch, self._changelog, partition=task), count

    # --- assignment and restore -----------------------------------------------------------------

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        async with self._lock:
            tasks = {tp.partition for tp in assigned} - self._tasks
            self.status.state = "restoring"
            for task in sorted(tasks):
                await self.restore(task)
            self._tasks |= tasks
            self.status.tasks = tuple(sorted(self._tasks))
            self._seek_to_checkpoints(assigned)
            self._rebalances += 1
            self.status.state = "running"

    def _seek_to_checkpoints(self, partitions: Collection[TopicPartition]) -> None:
        """Read each partition on from its task's checkpoint in the store (the one truth)."""
        consumer = self._started_consumer()
        store = self._started_store()
        for tp in partitions:
            checkpoint = store.get(tp.partition, CHECKPOINT_KEY) or {}
            consumer.seek(tp, int(checkpoint.get(tp.topic, 0)))

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        async with self._lock:
            self._tasks -= {tp.partition for tp in revoked}
            self.status.tasks = tuple(sorted(self._tasks))

    async def restore(self, task: int) -> int:
        """Bring the store's ``task`` up to the end of its changelog partition."""
        count = await restore_task(self._kafka, self._started_store(), self._changelog, task)
        self.status.restored += count
        return count


#: the datum fields the runner itself reads of a plain record (dedupe by id, its expiry)
_RUNNER_FIELDS = ("event_id", "occurred_at")

#: how long a failed checkpoint waits for its transaction's abort before leaving it open
_ABORT_TIMEOUT_S = 2.0

#: Kafka errors a fresh runner cannot cure: the cluster refuses this client (its configuration);
#: a record too large for the cluster is the other (the projection's state is, for good)
_FOR_GOOD = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


def _failed(exc: KafkaError, doing: str) -> BackboneError:
    """Our error for a Kafka error met by a runner: retriable (a fresh runner, after back-off,
    reconnects, restores and resumes) unless the cluster refuses this client for good. aiokafka
    reports a lost connection in some paths as a bare ``KafkaError`` ("Unexpected error during
    batch delivery" when its transactional sender dies), which :func:`translate` would call
    permanent."""
    error = translate(exc, doing)
    if error.retriable or isinstance(exc, _FOR_GOOD) or isinstance(error, RecordTooLargeError):
        return error
    return KafkaUnavailableError(str(error))


def _changelog_value(value: JSON | None) -> bytes | None:
    """A state value as its changelog record (None: a tombstone); what ``encode`` writes."""
    if value is None:
        return None
    return encode(value).encode()


def _headers(event: Event, value: bytes) -> list[tuple[str, bytes]]:
    """The headers :class:`streams.Publisher` sets: event type, schema id, trace context."""
    out = [
        (h.EVENT_TYPE, event.event_type.encode()),
        (h.SCHEMA_ID, str(int.from_bytes(value[1:5], "big")).encode()),
    ]
    if traceparent := event.traceparent or current_traceparent():
        out.append((h.TRACEPARENT, traceparent.encode()))
    return out


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    def __init__(self, runner: ProjectionRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        try:
            await self._runner.on_assigned(assigned)
        except Exception as exc:  # aiokafka would log it and go on with tasks never restored
            self._runner.assign_failed = exc
