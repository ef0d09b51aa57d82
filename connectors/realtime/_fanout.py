"""Each gateway instance's reader of the fan-out topics, and the replays that resume clients.

:class:`FanOut` reads every partition of every channel topic with no consumer group (each
instance serves its own clients, so each needs everything), from the end, and hands each record to
the subscriptions of the channels it belongs to, serialising the frame once per channel.

Resume without gap or duplicate: registering a subscription returns the fan-out's positions at
that instant (the next offset it will dispatch, per partition). Every record at or after them
reaches the subscription live (held back while it replays); :meth:`FanOut.replay` reads the
records between the client's position and those positions from Kafka with its own short-lived
consumer. Replayed offsets are all below the snapshot, live ones at or above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from connectors.realtime import _frames
from connectors.realtime._outbox import Outbox
from connectors.realtime._topic_ids import topic_epochs
from connectors.realtime.channels import Channel, channels_of, fanout_topics
from connectors.realtime.errors import RealtimeUnavailableError
from streams.admin import partitions
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import BackboneError
from streams.events import Event
from streams.follow import stop_quietly
from streams.settings import KafkaSettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)

TP = tuple[str, int]  # real topic name, partition


class PositionGoneError(Exception):
    """A replay found its start no longer in the log (deleted by retention meanwhile)."""


class Subscription:
    """One connection's subscription to one channel."""

    def __init__(self, channel: Channel, outbox: Outbox, *, live: bool, max_pending: int) -> None:
        self.channel = channel
        self.outbox = outbox
        self.live = live
        self._pending: list[bytes] = []
        self._max_pending = max_pending

    def deliver(self, frame: bytes) -> None:
        if self.live:
            self.outbox.offer(frame)
        elif len(self._pending) < self._max_pending:
            self._pending.append(frame)
        else:  # fell this far behind while replaying: a slow consumer
            self._pending.clear()
            self.outbox.fail()

    def go_live(self) -> None:
        """After the replay: send what arrived meanwhile, then deliver directly (no await here)."""
        pending, self._pending = self._pending, []
        self.live = True
        for frame in pending:
            self.outbox.offer(frame)


class FanOut:
    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        *,
        replay_concurrency: int = 4,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._logical = {catalogue.name(t): t for t in fanout_topics()}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._positions: dict[TP, int] = {}
        self._partitions: dict[str, list[int]] = {}
        self.epochs: dict[str, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._replay_slots = asyncio.Semaphore(replay_concurrency)
        self._on_failure = on_failure
        self.dispatched = 0

    async def start(self) -> None:
        topics = list(self._logical)
        self.epochs = await topic_epochs(self._kafka, topics)
        self._partitions = {
            t: sorted(ps) for t, ps in (await partitions(self._kafka, topics)).items()
        }
        tps = [TopicPartition(t, p) for t, ps in self._partitions.items() for p in ps]
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-fanout",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                self._positions[(tp.topic, tp.partition)] = await consumer.position(tp)
        except KafkaError as exc:
            await stop_quietly(consumer)
            raise RealtimeUnavailableError(f"cannot follow the fan-out topics: {exc}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="realtime-fanout")
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_quietly(consumer)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the websocket fan-out stopped", exc_info=exc)
            if self._on_failure is not None:
                self._on_failure(exc)

    # --- subscriptions ------------------------------------------------------------------------

    def partitions_of(self, channel: Channel) -> list[TP]:
        tps: list[TP] = []
        for logical in channel.topics:
            real = self._catalogue.name(logical)
            tps.extend((real, p) for p in self._partitions.get(real, []))
        return tps

    def register(self, subscription: Subscription) -> dict[TP, int]:
        """Start delivering the channel to ``subscription``; the positions it starts at."""
        self._subscribers.setdefault(subscription.channel.name, set()).add(subscription)
        return self.snapshot(subscription.channel)

    def snapshot(self, channel: Channel) -> dict[TP, int]:
        """The next offset the fan-out will dispatch, per partition of the channel."""
        return {tp: self._positions[tp] for tp in self.partitions_of(channel)}

    def subscriber_count(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    def unregister(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.channel.name)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subscribers[subscription.channel.name]

    async def log_starts(self, tps: list[TP]) -> dict[TP, int]:
        """The first offset each partition still holds."""
        if self._consumer is None:
            raise RealtimeUnavailableError("the fan-out is not running")
        try:
            found = await self._consumer.beginning_offsets([TopicPartition(*tp) for tp in tps])
        except KafkaError as exc:
            raise RealtimeUnavailableError(f"cannot read log start offsets: {exc}") from exc
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    # --- live ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=2_000)
            except KafkaError as exc:
                log.warning("websocket fan-out: %s", exc)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for i, record in enumerate(records, 1):
                    await self._dispatch(record)
                    if i % 64 == 0:  # let the writers drain the queues during a large batch
                        await asyncio.sleep(0)

    async def _decode(self, record: ConsumerRecord[bytes, bytes], *, live: bool) -> Event | None:
        """The record's event; None for tombstones and records no one can decode (those go to
        ``backbone.undecodable`` through the consumers that own them). While the registry is
        unreachable the live reader waits (never skips); a replay gives up instead."""
        if record.value is None:  # a tombstone in a compacted topic: nothing to show
            return None
        while True:
            try:
                return await self._codec.decode(record.value)
            except BackboneError as exc:
                if not exc.retriable:
                    log.warning(
                        "websocket fan-out skips %s@%d: %s", record.topic, record.offset, exc
                    )
                    return None
                if not live:
                    raise RealtimeUnavailableError(f"cannot decode {record.topic}: {exc}") from exc
                log.warning("websocket fan-out waits for the registry: %s", exc)
                await asyncio.sleep(1)

    async def _dispatch(self, record: ConsumerRecord[bytes, bytes]) -> None:
        tp = (record.topic, record.partition)
        event = await self._decode(record, live=True) if self._subscribers else None
        # From here to the position update nothing awaits: a subscription registered meanwhile
        # sees this record live exactly when its snapshot is at or below this offset.
        if event is not None:
            logical = self._logical[record.topic]
            payload: bytes | None = None
            for name in channels_of(logical, event):
                subs = self._subscribers.get(name)
                if not subs:
                    continue
                if payload is None:
                    payload = _frames.payload_of(event)
                frame = _frames.publication(name, event, self._position(record), payload)
                for sub in list(subs):
                    sub.deliver(frame)
                self.dispatched += 1
        self._positions[tp] = record.offset + 1

    def _position(self, record: ConsumerRecord[Any, Any]) -> _frames.Position:
        return _frames.Position(
            record.topic, record.partition, record.offset, self.epochs[record.topic]
        )

    # --- replay --------------------------------------------------------------------------------

    async def replay(
        self,
        channel: Channel,
        start: dict[TP, int],
        stop: dict[TP, int],
        put: Callable[[bytes], Awaitable[None]],
    ) -> int:
        """Send the channel's records in [start, stop) per partition through ``put``; how many."""
        todo = {tp: offset for tp, offset in start.items() if offset < stop[tp]}
        if not todo:
            return 0
        sent = 0
        async with self._replay_slots:
            consumer = AIOKafkaConsumer(
                **client_options(self._kafka),
                client_id=f"{self._kafka.client_id}-replay",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="none",  # a start deleted meanwhile must fail, never skip
            )
            try:
                await consumer.start()
                remaining = {TopicPartition(*tp) for tp in todo}
                consumer.assign(list(remaining))
                for tp in remaining:
                    consumer.seek(tp, todo[(tp.topic, tp.partition)])
                while remaining:
                    batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=500)
                    for records in batch.values():
                        sent += await self._replay_batch(channel, records, stop, put)
                    for tp in list(remaining):
                        if await consumer.position(tp) >= stop[(tp.topic, tp.partition)]:
                            remaining.discard(tp)
            except OffsetOutOfRangeError as exc:
                raise PositionGoneError(str(exc)) from exc
            except KafkaError as exc:
                raise RealtimeUnavailableError(f"cannot replay {channel.name}: {exc}") from exc
            finally:
                await stop_quietly(consumer)
        return sent

    async def _replay_batch(
        self,
        channel: Channel,
        records: list[ConsumerRecord[bytes, bytes]],
        stop: dict[TP, int],
        put: Callable[[bytes], Awaitable[None]],
    ) -> int:
        sent = 0
        for record in records:
            if record.offset >= stop[(record.topic, record.partition)]:
                break
            logical = self._logical[record.topic]
            if not channel.key_may_match(logical, record.key):
                continue
            event = await self._decode(record, live=False)
            if event is None or not channel.matches(logical, event):
                continue
            frame = _frames.publication(
                channel.name, event, self._position(record), _frames.payload_of(event)
            )
            await put(frame)
            sent += 1
        return sent
