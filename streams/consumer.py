"""Consuming typed events: :class:`Subscriber`, :class:`Received` and :class:`IdempotenceFilter`.

Delivery is at-least-once: offsets are committed only by :meth:`Subscriber.commit`, after the
caller processed a record, so a crash replays what was not committed. Pair it with an
:class:`IdempotenceFilter` (per process) and idempotent side effects downstream.

Undecodable records never stop a partition: a record whose value the codec rejects for good (a
non-retriable Backbone error) is written, byte for byte, to the dead letter its catalogue topic
names (``backbone.undecodable`` when none) with ``backbone-dlt-*`` headers saying why and where it
came from, and the subscriber moves on. A retriable decode failure (registry unreachable) is raised
instead: the record is probably fine and must not be thrown away.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams._backoff import CONSUMER_BACKOFF, back_off_metadata, learn_topics_together
from streams._dead_letter import DeadLetters
from streams._kafka_errors import translate
from streams.admin import partitions
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import (
    BackboneError,
    ConfigurationError,
    OffsetCommitError,
    TopicCatalogueError,
)
from streams.events import Event
from streams.settings import KafkaSettings
from streams.topics import Catalogue


@dataclass(frozen=True)
class Received:
    """A decoded event with the coordinates and headers of its record."""

    event: Event
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: dict[str, bytes]


def resolve_topic(catalogue: Catalogue, name: str) -> str:
    """A logical catalogue name becomes the real (prefixed) name; anything else is taken as real."""
    try:
        return catalogue.name(name)
    except TopicCatalogueError:
        return name


class Subscriber:
    """An async iterator of :class:`Received` over one or more topics.

    With a ``group_id`` the topics are shared with the group's other members and progress is
    committed with :meth:`commit`. Without one, every partition is read by this process alone
    (``tail``-style), starting at the beginning, the end, or ``start_at_ms``.
    ``stop_at_end`` ends the iteration at the end offsets seen when the iteration started.
    ``dead_letters=False`` (read-only tools such as ``tail``) skips undecodable records instead of
    writing them to the dead letter; they are counted in :attr:`undecodable`.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        topics: Sequence[str],
        group_id: str | None,
        *,
        from_beginning: bool = True,
        start_at_ms: int | None = None,
        stop_at_end: bool = False,
        poll_timeout_ms: int = 500,
        dead_letters: bool = True,
    ) -> None:
        if group_id is not None and (start_at_ms is not None or stop_at_end):
            # a group member's partitions come and go with rebalances: neither a start time nor
            # "the end" is defined for it (reset the group's offsets instead)
            raise ConfigurationError("start_at_ms and stop_at_end are for group-less subscribers")
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._topics = [resolve_topic(catalogue, t) for t in topics]
        self._group_id = group_id
        self._from_beginning = from_beginning
        self._start_at_ms = start_at_ms
        self._stop_at_end = stop_at_end
        self._poll_timeout_ms = poll_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._buffer: deque[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]] = deque()
        self._ends: dict[TopicPartition, int] | None = None
        self._dead_letters = DeadLetters(kafka, catalogue)
        #: next offset to commit per partition / last offset handed to the caller
        self._committed: dict[TopicPartition, int] = {}
        self._yielded: dict[TopicPartition, int] = {}
        self._write_dead_letters = dead_letters
        self.dead_lettered = 0
        self.undecodable = 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-subscriber",
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._from_beginning else "latest",
            isolation_level="read_committed",
            request_timeout_ms=self._kafka.request_timeout_ms,
            **CONSUMER_BACKOFF,
        )
        back_off_metadata(consumer)
        learn_topics_together(consumer)
        try:
            await consumer.start()
            if self._group_id is None:
                await self._assign_all(consumer)
            else:
                consumer.subscribe(self._topics, listener=_Revocations(self._drop_revoked))
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise translate(exc, f"subscribing to {self._topics}") from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> None:
        found = await partitions(self._kafka, self._topics)
        tps = [TopicPartition(t, p) for t, ps in found.items() for p in ps]
        consumer.assign(tps)
        if self._start_at_ms is not None:
            offsets = await consumer.offsets_for_times(dict.fromkeys(tps, self._start_at_ms))
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                found_at = offsets.get(tp)
                consumer.seek(tp, found_at.offset if found_at is not None else ends[tp])
        elif self._from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        await self._dead_letters.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise ConfigurationError(
                "the Subscriber is not started: use `async with Subscriber(...)`"
            )
        return self._consumer

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Received:
        """The next decodable record. Fetched records wait in a buffer owned by the subscriber,
        so leaving an ``async for`` and iterating again continues where it stopped; a record
        whose decoding failed retriably stays first in line and is tried again."""
        consumer = self._started()
        if self._stop_at_end and self._ends is None:
            assigned = list(consumer.assignment())
            self._ends = dict(await consumer.end_offsets(assigned)) if assigned else {}
        while True:
            while self._buffer:
                tp, record = self._buffer[0]
                received = await self._decode(tp, record)
                self._buffer.popleft()
                if received is not None:
                    self._yielded[tp] = record.offset
                    return received
            if self._ends is not None and await self._reached(consumer, self._ends):
                raise StopAsyncIteration
            try:
                batches = await consumer.getmany(timeout_ms=self._poll_timeout_ms)
            except KafkaError as exc:
                raise translate(exc, f"reading {self._topics}") from exc
            self._buffer.extend((tp, r) for tp, records in batches.items() for r in records)

    def _drop_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """After a rebalance, records of partitions this member lost belong to another one."""
        lost = set(revoked)
        self._buffer = deque((tp, r) for tp, r in self._buffer if tp not in lost)

    async def _reached(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _decode(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> Received | None:
        try:
            data = record.value or b""
            event = self._codec.decode_cached(data) or await self._codec.decode(data)
        except BackboneError as exc:
            if exc.retriable:
                raise
            self.undecodable += 1
            if self._write_dead_letters:
                await self._dead_letter(tp, record, exc)
            return None
        return Received(
            event=event,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            headers=dict(record.headers),
        )

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], error: BackboneError
    ) -> None:
        await self._dead_letters.send(record, error)
        self.dead_lettered += 1
        # Commit past it only when the caller has committed everything it was given on this
        # partition; otherwise committing here would silently commit their unprocessed records.
        if self._group_id is not None and self._committed.get(tp, 0) > self._yielded.get(tp, -1):
            await self._commit_offset(tp, record.offset + 1)

    async def commit(self, received: Received) -> None:
        """Record that ``received`` (and everything before it on its partition) is processed."""
        if self._group_id is None:
            raise ConfigurationError("a Subscriber without group_id has no offsets to commit")
        await self._commit_offset(
            TopicPartition(received.topic, received.partition), received.offset + 1
        )

    async def _commit_offset(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._started().commit({tp: offset})
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise translate(exc, f"committing {tp.topic}/{tp.partition}") from exc
            raise OffsetCommitError(
                f"committing {tp.topic}/{tp.partition}@{offset}: {exc}"
            ) from exc
        self._committed[tp] = max(offset, self._committed.get(tp, 0))


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    def __init__(self, on_revoked: Callable[[Collection[TopicPartition]], None]) -> None:
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        pass


class IdempotenceFilter:
    """Remembers the last ``capacity`` event ids this process handled (LRU).

    Per process and in memory: it absorbs redeliveries after a rebalance or a retry within one
    worker's life, not across restarts. Side effects that must happen once need an idempotency key
    at their destination as well.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ConfigurationError("IdempotenceFilter capacity must be at least 1")
        self._capacity = capacity
        self._seen: OrderedDict[UUID, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def first_time(self, event: Event | Received) -> bool:
        """True the first time an event id is offered (and remembers it); False for repeats."""
        event_id = (event.event if isinstance(event, Received) else event).event_id
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
