"""Which calls already ended: the executor's guard against running a call twice.

The record of completion is ``calls.results`` itself: every terminal event (``call.succeeded``,
``call.dead_lettered``, ``call.expired``) carries the call's idempotency key. On start the worker reads the topic to its end (no consumer group), then keeps
tailing it, so a request redelivered after a crash, a rebalance or a duplicate publish finds its key
and is acknowledged without calling the provider again. A call that ended without success
(dead-lettered or expired) runs again only when re-driven (``backbone-redriven-from``); one that
succeeded never runs again. Keys of calls in flight are also held, so a
duplicate that arrives while the first copy runs waits for its outcome instead of racing it.

Limits (documented, not hidden): a call that was executed but whose success was not yet written
when the worker died is executed again (the provider gets the same ``Idempotency-Key`` header to
dedupe); memory grows with the number of distinct keys within the topic's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.calls import CallDeadLettered, CallExpired, CallSucceeded
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


class CompletedCalls:
    def __init__(self) -> None:
        self._done: set[str] = set()
        self._given_up: set[str] = set()
        self._running: dict[str, asyncio.Future[None]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, key: str) -> None:
        self._done.add(key)

    def give_up(self, key: str) -> None:
        self._given_up.add(key)

    async def claim(self, key: str, *, redriven: bool = False) -> bool:
        """True when the caller may run the call; False when it already ended.

        A second claim of a running key waits until the first copy releases it.
        """
        while True:
            if key in self._done or (key in self._given_up and not redriven):
                return False
            running = self._running.get(key)
            if running is None:
                self._running[key] = asyncio.get_running_loop().create_future()
                return True
            await asyncio.shield(running)

    def release(self, key: str, *, succeeded: bool = False, gave_up: bool = False) -> None:
        if succeeded:
            self._done.add(key)
        elif gave_up:
            self._given_up.add(key)
        running = self._running.pop(key, None)
        if running is not None and not running.done():
            running.set_result(None)


class ResultsTail:
    """Reads ``calls.results`` from the beginning into a :class:`CompletedCalls`, then follows it."""

    def __init__(
        self, kafka: KafkaSettings, codec: Codec, topic: str, completed: CompletedCalls
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._topic = topic
        self.completed = completed
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            client_id=f"{self._kafka.client_id}-results-tail",
            enable_auto_commit=False,
            isolation_level="read_committed",  # aborted exactly-once writes are not outcomes
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        partitions = consumer.partitions_for_topic(self._topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(ends), name="results-tail")
        await self._caught_up.wait()

    async def _run(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp for tp, end in ends.items() if end > 0}
        if not pending:
            self._caught_up.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    await self._absorb(record.value)
                if tp in pending and records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if pending:
                for tp in list(pending):
                    if await self._consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            if not pending:
                self._caught_up.set()

    async def _absorb(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            event = await self._codec.decode(value)
        except BackboneError as exc:  # not ours to dead-letter: the results' own consumers do
            log.warning("results tail skipped an undecodable record: %s", exc)
            return
        if isinstance(event, CallSucceeded):
            self.completed.add(event.idempotency_key)
        elif isinstance(event, CallDeadLettered):
            self.completed.give_up(event.request.idempotency_key)
        elif isinstance(event, CallExpired):
            self.completed.give_up(event.idempotency_key)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
