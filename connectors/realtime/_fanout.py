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
from streams.long_poll import LONG_POLL_MS
from streams.settings import KafkaSettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)

TP = tuple[str, int]  # real topic name, partition
#: Most records the live reader takes at once; their frames go to each client as one write.
_BATCH_RECORDS = 500


class PositionGoneError(Exception):
    """A replay found its start no longer in the log (deleted by retention meanwhile)."""


class Subscription:
    """One connection's subscription to one channel."""

    def __init__(self, channel: Channel, outbox: Outbox, *, live: bool, max_pending: int) -> None:
        self.channel = channel
        self.outbox = outbox
        self.live = live
        self._pending: list[tuple[bytes, int]] = []
        self._pending_frames = 0
        self._max_pending = max_pending

    def deliver(self, chunk: bytes, frames: int = 1) -> None:
        """``chunk``: ``frames`` wire frames of this channel, in log order."""
        if self.live:
            self.outbox.offer(chunk, frames)
        elif self._pending_frames + frames <= self._max_pending:
            self._pending.append((chunk, frames))
            self._pending_frames += frames
        else:  # fell this far behind while replaying: a slow consumer
            self._pending.clear()
            self._pending_frames = 0
            self.outbox.fail()

    def go_live(self) -> None:
        """After the replay: send what arrived meanwhile, then deliver directly (no await here)."""
        pending, self._pending, self._pending_frames = self._pending, [], 0
        self.live = True
        for chunk, frames in pending:
            self.outbox.offer(chunk, frames)


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
        self._moves = 0  # how many times the positions moved (keys the checkpoint frames)
        self._checkpoints: dict[str, tuple[int, dict[TP, int], bytes]] = {}
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
            # the fetch routine's idle wake-ups (seeks and fetches wake it anyway); the fetch
            # wait itself stays short: beginning_offsets on a resubscribe would queue behind it
            consumer_timeout_ms=LONG_POLL_MS,
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

    def positions_json(self, next_offsets: dict[TP, int]) -> list[dict[str, Any]]:
        """Positions of the last record delivered (offset -1: none yet) per partition."""
        return [
            _frames.Position(t, p, offset - 1, self.epochs[t]).to_json()
            for (t, p), offset in sorted(next_offsets.items())
        ]

    def checkpoint(self, channel: Channel) -> tuple[dict[TP, int], bytes]:
        """The channel's snapshot and its ``positions`` frame (wire bytes), built once per channel
        and position change, not once per connection and tick."""
        cached = self._checkpoints.get(channel.name)
        if cached is not None and cached[0] == self._moves:
            return cached[1], cached[2]
        now = self.snapshot(channel)
        frame = _frames.wire(
            _frames.encode(
                {
                    "type": "positions",
                    "channel": channel.name,
                    "positions": self.positions_json(now),
                }
            )
        )
        self._checkpoints[channel.name] = (self._moves, now, frame)
        return now, frame

    def subscriber_count(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    def unregister(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.channel.name)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subscribers[subscription.channel.name]
                self._checkpoints.pop(subscription.channel.name, None)

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
                # returns on the first record; the timeout only paces an idle loop
                batch = await self._consumer.getmany(
                    timeout_ms=LONG_POLL_MS, max_records=_BATCH_RECORDS
                )
            except KafkaError as exc:
                log.warning("websocket fan-out: %s", exc)
                await asyncio.sleep(1)
                continue
            records = [record for part in batch.values() for record in part]
            if records:
                await self._dispatch(records)
                await asyncio.sleep(0)  # the connections' writers and requests get their turn

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

    async def _dispatch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Deliver a batch: per channel, the frames of its records joined into one chunk, written
        to each subscriber at once (one write per client and batch, not one task wake-up per
        client and frame)."""
        self._moves += 1
        if not self._subscribers:  # no await on this path: no one can subscribe meanwhile
            for record in records:
                self._positions[(record.topic, record.partition)] = record.offset + 1
            return
        # A subscription registered during these awaits has a snapshot before the whole batch,
        # so it gets all of it live.
        events = [await self._decode(record, live=True) for record in records]
        self._moves += 1
        # From here to the position updates nothing awaits: a subscription registered before
        # sees a record live exactly when its snapshot is at or below the record's offset.
        chunks: dict[str, list[bytes]] = {}
        for record, event in zip(records, events, strict=True):
            self._positions[(record.topic, record.partition)] = record.offset + 1
            if event is None:
                continue
            payload: bytes | None = None
            for name in channels_of(self._logical[record.topic], event):
                if not self._subscribers.get(name):
                    continue
                if payload is None:
                    payload = _frames.payload_of(event)
                frame = _frames.publication(name, event, self._position(record), payload)
                chunks.setdefault(name, []).append(_frames.wire(frame))
        for name, frames in chunks.items():
            chunk = b"".join(frames)
            for sub in list(self._subscribers.get(name, ())):
                sub.deliver(chunk, len(frames))
            self.dispatched += len(frames)

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
        """Send the channel's records in [start, stop) per partition through ``put`` (as wire
        frames); how many."""
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
            await put(_frames.wire(frame))
            sent += 1
        return sent
