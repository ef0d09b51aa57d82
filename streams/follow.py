"""Reading topics into memory: everything up to their end on start, then follow them.

The one way Backbone rebuilds an in-memory view from the log (the webhook seen-set and endpoint
registry, the call ledger, read models): no consumer group, ``read_committed``, every partition
from the beginning. :meth:`TopicFollower.start` returns once everything written before it was
applied; :meth:`TopicFollower.caught_up` is the same barrier later on (e.g. before a worker acts on
partitions it was just given, it waits until the view holds what their previous owner wrote).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams._backoff import CONSUMER_BACKOFF, back_off_metadata, learn_topics_together
from streams.admin import partitions
from streams.connection import client_options
from streams.errors import KafkaUnavailableError
from streams.long_poll import LONG_POLL_MS, long_poll
from streams.settings import KafkaSettings
from streams.supervise import Supervisor

log = logging.getLogger(__name__)

OnRecord = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
#: Seeks the follower's consumer to where reading starts (e.g. a store's checkpoint).
StartAt = Callable[[AIOKafkaConsumer, list[TopicPartition]], Awaitable[None]]
#: Told the consumer's positions (``(topic, partition) -> next offset``) after each applied batch:
#: every record before them was applied (a store checkpoints them with its state).
OnBatch = Callable[[dict[tuple[str, int], int]], Awaitable[None]]


class TopicFollower:
    def __init__(
        self,
        kafka: KafkaSettings,
        topics: str | Sequence[str],
        on_record: OnRecord,
        *,
        from_end: bool = False,
        start_at: StartAt | None = None,
        on_batch: OnBatch | None = None,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        """``from_end``: skip what is already there and apply only records written after start;
        ``start_at``: seek to positions of the caller's choosing instead of the beginning.
        ``fetch_min_bytes``: the broker holds a fetch until this much is there (or
        ``fetch_max_wait_ms`` passed): a view that need not see each record at once (one with a
        :meth:`caught_up` barrier where it matters) reads many records per fetch instead of one.
        With ``fetch_min_bytes`` = 1 the follower switches to long polls once started
        (:mod:`streams.long_poll`): idle, it costs next to nothing; :meth:`caught_up` may then
        wait up to ``LONG_POLL_MS`` for its offset lookup."""
        self._kafka = kafka
        self._from_end = from_end
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._on_record = on_record
        self._start_at = start_at
        self._on_batch = on_batch
        self._fetch = {"fetch_min_bytes": fetch_min_bytes, "fetch_max_wait_ms": fetch_max_wait_ms}
        #: a fetch that returns on the first record can wait long at the broker when idle
        self._long_poll = fetch_min_bytes == 1
        self._consumer: AIOKafkaConsumer | None = None
        self._supervisor = Supervisor(f"follow {self._topics[0]}")
        self._moved = asyncio.Event()  # set whenever positions advanced
        #: a fetched batch is being applied: the consumer's positions are already past it
        self._applying = False

    async def start(self) -> None:
        """Returns once everything written before the call has been applied."""
        found = await partitions(self._kafka, self._topics)
        tps = [TopicPartition(t, p) for t in self._topics for p in found[t]]
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-follow",
            enable_auto_commit=False,
            group_id=None,
            # must agree with the seek below: aiokafka's own reset of a fresh assignment can
            # answer after the seek and be applied to it (projections/_rebuild.py, _start_at)
            auto_offset_reset="latest" if self._from_end else "earliest",
            isolation_level="read_committed",
            **self._fetch,
            **CONSUMER_BACKOFF,
            consumer_timeout_ms=LONG_POLL_MS,  # seeks and finished fetches wake it anyway
        )
        back_off_metadata(consumer)
        learn_topics_together(consumer)
        try:
            await consumer.start()
            consumer.assign(tps)
            if self._from_end:
                await consumer.seek_to_end(*tps)
            elif self._start_at is not None:
                await self._start_at(consumer, tps)
            else:
                await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:  # from the end: resolves the positions now, nothing to apply
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                    for record in batch.get(tp, []):
                        await self._apply(record)
                    await self._batch_done(consumer, tps)
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailableError(f"cannot read {self._topics}: {exc}") from exc
        if self._long_poll:  # after the offset lookups above: they would queue behind it
            long_poll(consumer)
        self._consumer = consumer
        self._supervisor.start("follow", self._follow)

    async def caught_up(self, timeout_s: float = 30.0) -> None:
        """Wait until everything written to the topics before this call has been applied."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("follower not started")
        tps = list(consumer.assignment())
        try:
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot read the end of {self._topics}: {exc}") from exc
        async with asyncio.timeout(timeout_s):
            while True:
                self._moved.clear()
                positions = [await consumer.position(tp) for tp in tps]
                if not self._applying and all(
                    pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)
                ):
                    return
                await self._moved.wait()

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            await self._on_record(record)
        except Exception:  # one bad record must not stop the view
            log.exception("cannot apply %s@%d", record.topic, record.offset)

    def problems(self) -> dict[str, str]:
        """Empty while following; else why not (a Kafka outage: retried with back-off)."""
        return self._supervisor.problems()

    async def _follow(self) -> None:
        """Supervised: a Kafka error ends this run and the supervisor restarts it after a capped,
        jittered back-off (the consumer keeps its positions)."""
        consumer = self._consumer
        assert consumer is not None
        while True:
            batch = await consumer.getmany(timeout_ms=LONG_POLL_MS)  # returns on the first record
            self._applying = True  # positions moved past the batch as getmany returned it
            try:
                self._supervisor.mark_ok("follow")
                for records in batch.values():
                    for record in records:
                        await self._apply(record)
                await self._batch_done(consumer, list(consumer.assignment()))
            finally:
                self._applying = False
            self._moved.set()

    async def _batch_done(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        if self._on_batch is not None:
            await self._on_batch(
                {(tp.topic, tp.partition): await consumer.position(tp) for tp in tps}
            )

    async def stop(self) -> None:
        await self._supervisor.close()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await stop_quietly(consumer)


async def stop_quietly(consumer: AIOKafkaConsumer, timeout_s: float = 15.0) -> None:
    """Stop a consumer even when the cluster is gone: aiokafka then lets the CancelledError of its
    own fetch task escape from ``stop()``; only a cancellation aimed at *us* is passed on. Bounded:
    a group consumer whose coordinator never answers (just after a broker restart) would keep a
    shutdown waiting for ever; past ``timeout_s`` it is abandoned with a warning."""
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.stop()
    except TimeoutError:
        log.warning("stopping a consumer: not stopped within %g s; abandoned", timeout_s)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except KafkaError as exc:
        log.warning("stopping a consumer: %s", exc)
