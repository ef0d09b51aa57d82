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
from streams._backoff import CONSUMER_BACKOFF, Backoff, back_off_metadata
from streams.connection import client_options
from streams.errors import KafkaUnavailableError
from streams.follow import stop_quietly
from streams.settings import KafkaSettings
from streams.supervise import report_death

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Handler = Callable[[list[Record]], Awaitable[None]]
#: A parked partition resumes this much before its head is due, so the fetch is not late
#: (the default head start; a stage with a longer fetch wait needs a longer one).
EARLY_S = 0.2
#: The longest an idle stage's fetch loop sleeps between turns (it commits on its turns).
IDLE_TURN_MS = 500


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
        early_s: float = EARLY_S,
    ) -> None:
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
        self._early_s = early_s
        # an idle turn ends at the next commit due (not every 100 ms: each turn costs CPU)
        self._turn_ms = max(1, min(IDLE_TURN_MS, int(commit_interval_s * 1000)))
        self._consumer: AIOKafkaConsumer | None = None
        self._progress: Progress[TopicPartition] = Progress()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._timers: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._stopping = False
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
        self._consumer = consumer
        self._loop_task = asyncio.create_task(self._run(), name=f"stage-{self.name}")
        self._loop_task.add_done_callback(self._loop_ended)

    async def stop(self) -> None:
        """Stop fetching, let the batches in hand finish (bounded), commit them, leave the group."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
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
        last_commit = time.monotonic()
        backoff = Backoff(first_s=0.1, cap_s=5.0)
        while not self._stopping:
            while self._in_flight >= self._prefetch:
                self._room.clear()
                await self._room.wait()
            try:
                batch = await consumer.getmany(
                    timeout_ms=self._turn_ms,
                    max_records=min(self._max_batch, self._prefetch - self._in_flight),
                )
            except KafkaError as exc:
                delay = backoff.next()
                log.warning("stage %s cannot fetch (again in %.1f s): %s", self.name, delay, exc)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if batch:
                self._dispatch(batch)
            committing = self._committing
            if time.monotonic() - last_commit >= self._commit_interval_s and (
                committing is None or committing.done()
            ):
                if committing is not None:
                    committing.result()  # a failure other than Kafka's ends the loop, as inline
                # in the background: a commit's round trip (10-80 ms on a loaded box) must not
                # hold back the records fetched meanwhile; one commit in flight at a time
                last_commit = time.monotonic()
                self._committing = asyncio.create_task(self._commit(), name=f"commit-{self.name}")

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
            return
        self._in_flight += len(records)
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
        finally:
            self._in_flight -= len(records)
            self._room.set()

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

    def _park(self, tp: TopicPartition, offset: int, delay: float) -> None:
        """Pause one partition at a record that is not due yet."""
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._consumer.pause(tp)
        if (old := self._timers.pop(tp, None)) is not None:
            old.cancel()
        self._timers[tp] = asyncio.get_running_loop().call_later(delay, self._unpark, tp)

    def _unpark(self, tp: TopicPartition) -> None:
        self._timers.pop(tp, None)
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    async def _cancel_commit(self) -> None:
        """Cancel the background commit in flight, if any, before a final commit: it commits
        only done records, so whether it landed or not, the final one (same or later offsets,
        sent after it) decides; and a commit the cluster never answers cannot hold up a stop."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        committing.cancel()
        await asyncio.wait([committing])  # a cancellation aimed at us still reaches us
        if not committing.cancelled() and (exc := committing.exception()) is not None:
            log.warning("stage %s: a background commit failed: %r", self.name, exc)

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
