"""A consumer-group stage with its own acking: the aiokafka runtime of the call pipeline.

A :class:`Stage` is one consumer in its own group. It fetches records and hands each fetched
batch to its handler as a task, up to ``prefetch`` records in flight, so a slow record holds back
only its own batch while the next ones are fetched and run. A handler returns only once everything
the batch produced is acknowledged by the cluster; offsets are then committed per partition up to
the first record not yet done, so nothing is committed before its outputs are durable.

- **Rebalance**: revoked partitions are drained before the group hands them over: their batches
  finish and are committed (or, past ``drain_timeout_s``, are cancelled and not committed), so a
  graceful hand-over neither loses nor repeats work. ``on_assigned`` runs before newly assigned
  partitions are processed (the call ledger catches up there).
- **Failure**: a handler that raises (its outputs could not be written) rewinds its partitions to
  the batch's first record, unless an earlier failure rewound them further back already; nothing
  of that batch or later is committed before it is done again. Both the read position and the
  commit come from one per-partition record of what is done (:mod:`agents._progress`).
- **Due times** (retry tiers): when the head of a partition is not due, only that partition is
  paused and rewound to it until then; other partitions keep flowing, nothing busy-waits.
- **Idle**: with no batch in hand and nothing parked, a fetch waits up to ``idle_fetch_wait_ms``
  at the broker (:mod:`streams.long_poll`): the broker answers as soon as a record is there, so
  the long wait only spaces out empty fetches. While a batch is in hand or a partition is parked
  the wait is ``fetch_wait_ms``: a partition resumed is not in the fetch in flight and waits for
  it to return. Records fetched but not taken yet (no room) hold their node's next fetch, so no
  fetch leaves their partition out (:func:`streams._aiokafka_compat.set_fetch_max_wait`). Nothing
  depends on the fetch loop waking up: the batch that makes a commit due schedules it
  (:meth:`Stage._commit_soon`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from agents._progress import Progress, Span
from streams._aiokafka_compat import set_fetch_max_wait
from streams._backoff import CONSUMER_BACKOFF, Backoff, back_off_metadata
from streams.connection import client_options
from streams.errors import KafkaUnavailableError
from streams.follow import stop_quietly
from streams.long_poll import LONG_POLL_MS
from streams.settings import KafkaSettings
from streams.supervise import report_death

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Handler = Callable[[list[Record]], Awaitable[None]]
#: A parked partition resumes this much before its head is due, so the fetch is not late
#: (the default head start; a stage with a longer fetch wait needs a longer one).
EARLY_S = 0.2


class Stage:
    def __init__(
        self,
        name: str,
        kafka: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        handle: Handler,
        *,
        prefetch: int,
        max_batch: int,
        commit_interval_s: float,
        session_timeout_s: float,
        rebalance_timeout_s: float,
        drain_timeout_s: float,
        due: Callable[[Record], float | None] | None = None,
        on_assigned: Callable[[], Awaitable[None]] | None = None,
        fetch_wait_ms: int = 20,
        idle_fetch_wait_ms: int | None = None,
        early_s: float = EARLY_S,
    ) -> None:
        """``fetch_wait_ms``: how long a fetch waits at the broker while a batch is in hand or a
        partition is parked; ``idle_fetch_wait_ms``: otherwise (None: ``fetch_wait_ms``)."""
        self.name = name
        self._kafka = kafka
        self._group_id = group_id
        self._topics = list(topics)
        self._handle = handle
        self._prefetch = prefetch
        self._max_batch = max_batch
        self._commit_interval_s = commit_interval_s
        self._session_timeout_s = session_timeout_s
        self._rebalance_timeout_s = rebalance_timeout_s
        self._drain_timeout_s = drain_timeout_s
        self._due = due
        self._on_assigned = on_assigned
        self._fetch_wait_ms = fetch_wait_ms
        self._idle_fetch_wait_ms = idle_fetch_wait_ms or fetch_wait_ms
        self._fetch_wait_now = fetch_wait_ms
        self._early_s = early_s
        self._consumer: AIOKafkaConsumer | None = None
        self._progress: Progress[TopicPartition] = Progress()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._timers: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._commit_timer: asyncio.TimerHandle | None = None
        self._last_commit = 0.0
        self._stopping = False
        self._fetching = False  # the loop waits in getmany
        #: why the fetch loop died (it handles Kafka's errors itself; anything else is a bug)
        self.failure: str | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-{self.name}",
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=self._fetch_wait_ms,
            # seeks, resumed partitions and finished fetches wake the fetch routine anyway
            consumer_timeout_ms=LONG_POLL_MS,
            max_poll_interval_ms=600_000,
            session_timeout_ms=int(self._session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, self._session_timeout_s / 3) * 1000),
            rebalance_timeout_ms=int(self._rebalance_timeout_s * 1000),
            **CONSUMER_BACKOFF,
        )
        back_off_metadata(consumer)
        try:
            await consumer.start()
            consumer.subscribe(self._topics, listener=_Listener(self))
        except KafkaError as exc:
            await stop_quietly(consumer)
            raise KafkaUnavailableError(f"stage {self.name} cannot join its group: {exc}") from exc
        # from the first fetch on, a partition with records not yet taken holds its node's next
        # fetch for as long as a fetch waits (streams._aiokafka_compat.set_fetch_max_wait)
        set_fetch_max_wait(consumer, self._fetch_wait_ms)
        self._consumer = consumer
        self._loop_task = asyncio.create_task(self._run(), name=f"stage-{self.name}")
        self._loop_task.add_done_callback(self._loop_ended)

    async def stop(self) -> None:
        """Stop fetching, let the batches in hand finish (bounded), commit them, leave the group."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task])  # a loop that died was reported: stop goes on
            self._loop_task = None
        await self._drain()
        await self._cancel_commit()
        await self._commit()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await stop_quietly(consumer)

    # --- the loop -------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = Backoff(first_s=0.1, cap_s=5.0)
        while not self._stopping:
            while self._in_flight >= self._prefetch:
                self._room.clear()
                await self._room.wait()
            self._fetching = True
            self._pace()  # records already fetched are returned without a wait: none is left out
            try:
                # a record wakes getmany at once: the timeout only paces an idle loop
                batch = await consumer.getmany(
                    timeout_ms=LONG_POLL_MS,
                    max_records=min(self._max_batch, self._prefetch - self._in_flight),
                )
            except KafkaError as exc:
                delay = backoff.next()
                log.warning("stage %s cannot fetch (again in %.1f s): %s", self.name, delay, exc)
                await asyncio.sleep(delay)
                continue
            finally:
                self._fetching = False
            backoff.reset()
            if batch:
                self._dispatch(batch)

    def _pace(self) -> None:
        """The fetch wait for what the stage holds: long only with no batch in hand, nothing
        parked, and the loop waiting in getmany (so no fetched record is waiting for room: a
        long fetch sent then would leave that record's partition out until it returns)."""
        idle = not self._timers and self._in_flight == 0 and self._fetching
        wait = self._idle_fetch_wait_ms if idle else self._fetch_wait_ms
        if wait != self._fetch_wait_now and self._consumer is not None:
            set_fetch_max_wait(self._consumer, wait)
            self._fetch_wait_now = wait

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """The fetch loop ended on its own: not at a stop, so it died; said, never silent."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        self.failure = f"died: {type(exc).__name__}: {exc}"
        report_death(f"stage {self.name}", exc)

    def _dispatch(self, batch: dict[TopicPartition, list[Record]]) -> None:
        now = time.time()
        records: list[Record] = []
        spans: list[tuple[TopicPartition, Span]] = []
        for tp, fetched in batch.items():
            taken = fetched
            if self._due is not None:
                for i, record in enumerate(fetched):
                    due = self._due(record)
                    if due is not None and due - now > self._early_s:
                        self._park(tp, record.offset, due - now - self._early_s)
                        taken = fetched[:i]
                        break
            if taken:
                spans.append(
                    (tp, self._progress.fetched(tp, taken[0].offset, taken[-1].offset + 1))
                )
                records.extend(taken)
        if not records:
            self._pace()  # a partition may have been parked
            return
        self._in_flight += len(records)
        self._pace()
        task = asyncio.create_task(self._run_batch(records, spans))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(
        self, records: list[Record], spans: list[tuple[TopicPartition, Span]]
    ) -> None:
        try:
            await self._handle(records)
        except asyncio.CancelledError:  # past a drain timeout: a partition kept is read again
            self._rewind(spans)
            raise
        except Exception:
            log.exception("stage %s: a batch failed; its partitions are read again", self.name)
            self._rewind(spans)
            await asyncio.sleep(1)
        else:
            for _, span in spans:
                self._progress.done(span)
            self._commit_soon()
        finally:
            self._in_flight -= len(records)
            self._room.set()
            self._pace()

    def _rewind(self, spans: list[tuple[TopicPartition, Span]]) -> None:
        """Read the failed spans again, unless a rewind below them is pending already."""
        consumer = self._consumer
        for tp, span in spans:
            offset = self._progress.failed(tp, span)
            if offset is None or consumer is None or tp not in consumer.assignment():
                continue
            consumer.seek(tp, offset)
            if (timer := self._timers.pop(tp, None)) is not None:
                timer.cancel()  # the partition is read again from below where it was parked
                consumer.resume(tp)
        self._pace()

    def _park(self, tp: TopicPartition, offset: int, delay: float) -> None:
        """Pause one partition at a record that is not due yet."""
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._consumer.pause(tp)
        if (old := self._timers.pop(tp, None)) is not None:
            old.cancel()
        self._timers[tp] = asyncio.get_running_loop().call_later(delay, self._unpark, tp)
        self._pace()

    def _unpark(self, tp: TopicPartition) -> None:
        self._timers.pop(tp, None)
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.resume(tp)
        self._pace()

    # --- commits --------------------------------------------------------------------------------
    def _commit_soon(self) -> None:
        """A batch is done: commit in the background once ``commit_interval_s`` has passed since
        the last commit (at once after a quiet spell). Scheduled here, not by the fetch loop's
        turns: an idle loop waits in getmany for seconds."""
        if self._commit_timer is not None or self._stopping:
            return
        delay = max(0.0, self._last_commit + self._commit_interval_s - time.monotonic())
        self._commit_timer = asyncio.get_running_loop().call_later(delay, self._commit_due)

    def _commit_due(self) -> None:
        self._commit_timer = None
        if self._stopping or (self._committing is not None and not self._committing.done()):
            return  # one commit in flight at a time: its end schedules the next (_commit_ended)
        # in the background: a commit's round trip (10-80 ms on a loaded box) must not hold back
        # the records fetched meanwhile
        self._last_commit = time.monotonic()
        self._committing = asyncio.create_task(self._commit(), name=f"commit-{self.name}")
        self._committing.add_done_callback(self._commit_ended)

    def _commit_ended(self, task: asyncio.Task[None]) -> None:
        """Commit again what is still uncommitted (done meanwhile, or a commit that failed or
        was cut short), so nothing done stays uncommitted while the stage is idle. A failure
        other than Kafka's (which :meth:`_commit` logs) is a bug: the stage stops fetching and
        says so, as when its fetch loop dies."""
        if task.cancelled():
            return  # by a revoke or a stop, which commit themselves
        if (exc := task.exception()) is not None:
            self.failure = f"commit died: {type(exc).__name__}: {exc}"
            report_death(f"stage {self.name} commit", exc)
            if self._loop_task is not None:
                self._loop_task.cancel()
            return
        if not self._stopping and self._progress.committable():
            self._commit_soon()

    async def _cancel_commit(self) -> None:
        """Cancel the background commit in flight, if any, before a final commit: it commits
        only done records, so whether it landed or not, the final one (same or later offsets,
        sent after it) decides; and a commit the cluster never answers cannot hold up a stop."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        committing.cancel()
        await asyncio.wait([committing])  # a cancellation aimed at us still reaches us

    async def _commit(self, only: Collection[TopicPartition] | None = None) -> None:
        offsets = self._progress.committable(only)
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress: the records may be read again
            log.warning("stage %s: commit failed (%s)", self.name, exc)
        else:
            self._progress.committed(offsets)

    async def _drain(self) -> None:
        """Wait for every batch in hand; past the timeout cancel the rest (not committed)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=self._drain_timeout_s)
        for task in late:
            task.cancel()
        if late:
            log.warning(
                "stage %s: %d batches cancelled after the drain timeout", self.name, len(late)
            )
            await asyncio.wait(late)

    # --- rebalance ------------------------------------------------------------------------------
    async def revoked(self, tps: Collection[TopicPartition]) -> None:
        await self._drain()
        await self._cancel_commit()
        await self._commit(tps)
        self._progress.forget(tps)
        for tp in tps:
            if (timer := self._timers.pop(tp, None)) is not None:
                timer.cancel()
        self._pace()
        if self._progress.committable():  # the other partitions' (the cancelled commit's)
            self._commit_soon()

    async def assigned(self, tps: Collection[TopicPartition]) -> None:
        if self._on_assigned is not None and tps:
            await self._on_assigned()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    def __init__(self, stage: Stage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._stage.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._stage.assigned(assigned)
