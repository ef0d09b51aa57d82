"""Copying a slice of a topic's log into another topic: ``backbone replay``.

A slice is, per partition, the offsets ``[start, end)``: from a time (the first record at or after
it, found with ``offsets_for_times``) or an explicit offset, up to a time (exclusive) or the end of
the log when the plan is made. Copies keep the original key, value bytes, timestamp and headers,
and carry :data:`~streams.headers.REPLAYED_FROM` (``topic/partition/offset``) so consumers know
they are copies. Agents must not re-trigger side effects for them unless
:data:`~streams.headers.REPLAY_SIDE_EFFECTS` says ``allow`` (see
:func:`streams.headers.side_effects_allowed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams import headers as h
from streams._aiokafka_compat import close_producer
from streams._kafka_errors import translate
from streams._reader import offsets_at, reader
from streams.admin import partitions
from streams.connection import client_options
from streams.errors import ConfigurationError, TopicCatalogueError
from streams.settings import KafkaSettings

_IN_FLIGHT = 1_000  # records sent before their acknowledgements are awaited


@dataclass(frozen=True)
class PartitionSlice:
    partition: int
    start: int  # first offset copied
    end: int  # first offset not copied

    @property
    def count(self) -> int:
        """Offsets in the slice (transaction markers and compacted gaps make it an upper bound)."""
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    slices: tuple[PartitionSlice, ...]

    @property
    def count(self) -> int:
        return sum(s.count for s in self.slices)


async def plan_replay(
    kafka: KafkaSettings,
    topic: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    from_offsets: Mapping[int, int] | None = None,
) -> ReplayPlan:
    """The slice to copy: from ``since_ms`` on every partition, or from ``from_offsets``
    (partition -> offset, only those partitions), up to ``until_ms`` or the current end."""
    if (since_ms is None) == (not from_offsets):
        raise ConfigurationError("a replay starts either at a time or at partition offsets")
    ids = (await partitions(kafka, [topic]))[topic]
    if from_offsets:
        unknown = set(from_offsets) - set(ids)
        if unknown:
            raise TopicCatalogueError(f"{topic} has no partition {sorted(unknown)}")
        ids = sorted(from_offsets)
    tps = [TopicPartition(topic, p) for p in ids]
    async with reader(kafka) as consumer:
        try:
            if since_ms is not None:
                starts = await offsets_at(consumer, tps, since_ms)
            else:
                assert from_offsets is not None
                first = await consumer.beginning_offsets(tps)
                starts = {tp: max(from_offsets[tp.partition], first[tp]) for tp in tps}
            if until_ms is not None:
                ends = await offsets_at(consumer, tps, until_ms)
            else:
                ends = dict(await consumer.end_offsets(tps))
        except KafkaError as exc:
            raise translate(exc, f"planning a replay of {topic}") from exc
    return ReplayPlan(
        topic,
        tuple(PartitionSlice(tp.partition, starts[tp], max(starts[tp], ends[tp])) for tp in tps),
    )


def copy_headers(
    record: ConsumerRecord[bytes, bytes], allow_side_effects: bool
) -> list[tuple[str, bytes]]:
    """The original headers (minus earlier replay marks) plus this replay's marks."""
    ours = {h.REPLAYED_FROM, h.REPLAY_SIDE_EFFECTS}
    kept = [(k, v) for k, v in record.headers if k not in ours]
    kept.append((h.REPLAYED_FROM, f"{record.topic}/{record.partition}/{record.offset}".encode()))
    if allow_side_effects:
        kept.append((h.REPLAY_SIDE_EFFECTS, h.ALLOW))
    return kept


async def _records(
    consumer: AIOKafkaConsumer, plan: ReplayPlan
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    ends = {TopicPartition(plan.topic, s.partition): s.end for s in plan.slices if s.count}
    if not ends:
        return
    consumer.assign(list(ends))
    for s in plan.slices:
        if s.count:
            consumer.seek(TopicPartition(plan.topic, s.partition), s.start)
    while ends:
        batches = await consumer.getmany(*ends, timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                if record.offset < ends.get(tp, -1):
                    yield record
        for tp in list(ends):
            if await consumer.position(tp) >= ends[tp]:
                del ends[tp]
                consumer.pause(tp)


@dataclass(frozen=True)
class ReplayResult:
    """What a replay copied. ``remaining`` is the part of the plan not copied (empty when
    complete): replaying it continues exactly where this one stopped, with no duplicates."""

    copied: int
    remaining: ReplayPlan
    interrupted: bool

    @property
    def complete(self) -> bool:
        return self.remaining.count == 0


async def replay(
    kafka: KafkaSettings,
    plan: ReplayPlan,
    target: str,
    *,
    allow_side_effects: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> ReplayResult:
    """Copy the plan's slice into ``target``.

    Cancelling the task (Ctrl-C) stops reading, waits for the records already sent to be
    acknowledged, and returns what was copied with the remaining plan instead of raising."""
    producer = AIOKafkaProducer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-replay",
        acks="all",
        enable_idempotence=True,
        linger_ms=kafka.linger_ms,
        request_timeout_ms=kafka.request_timeout_ms,
    )
    interrupted = False
    tally = _Tally({s.partition: s.start for s in plan.slices})
    try:
        await producer.start()
        async with reader(kafka) as consumer:
            pending: list[tuple[int, int, asyncio.Future[Any]]] = []
            try:
                async for record in _records(consumer, plan):
                    send = asyncio.ensure_future(
                        producer.send(
                            target,
                            record.value,
                            key=record.key,
                            timestamp_ms=record.timestamp,
                            headers=copy_headers(record, allow_side_effects),
                        )
                    )
                    try:
                        sent = await asyncio.shield(send)
                    except asyncio.CancelledError:
                        # the record may be queued already: keep it so its ack is counted
                        pending.append((record.partition, record.offset, await send))
                        raise
                    pending.append((record.partition, record.offset, sent))
                    if len(pending) >= _IN_FLIGHT:
                        await _settle(pending, tally, progress)
            except asyncio.CancelledError:
                interrupted = True  # stop reading; what was sent is settled below
            await _settle(pending, tally, progress)
    except KafkaError as exc:
        raise translate(exc, f"replaying {plan.topic} into {target}") from exc
    finally:
        await close_producer(producer, 2 * kafka.request_timeout_ms / 1000)
    # Finished without interruption: offsets never seen (transaction markers, compacted gaps)
    # are not "remaining".
    remaining = ReplayPlan(
        plan.topic,
        tuple(
            PartitionSlice(
                s.partition,
                s.end if not interrupted else max(s.start, tally.acked[s.partition]),
                s.end,
            )
            for s in plan.slices
        ),
    )
    return ReplayResult(tally.copied, remaining, interrupted)


@dataclass
class _Tally:
    """What the target acknowledged so far: per partition the first offset not yet acked."""

    acked: dict[int, int]
    copied: int = 0


async def _settle(
    pending: list[tuple[int, int, asyncio.Future[Any]]],
    tally: _Tally,
    progress: Callable[[int], None],
) -> None:
    acks = asyncio.gather(*(future for _, _, future in pending))
    try:
        await asyncio.shield(acks)
    except asyncio.CancelledError:
        await acks  # Ctrl-C while waiting: the acknowledgements still decide the resume point
        _count(pending, tally, progress)
        raise
    _count(pending, tally, progress)


def _count(
    pending: list[tuple[int, int, asyncio.Future[Any]]],
    tally: _Tally,
    progress: Callable[[int], None],
) -> None:
    for partition, offset, _ in pending:
        tally.acked[partition] = max(tally.acked[partition], offset + 1)
    tally.copied += len(pending)
    progress(len(pending))
    pending.clear()
