"""Moving a consumer group's committed offsets to a point in time (``backbone groups reset``).

As with ``kafka-consumer-groups --reset-offsets --to-datetime``: the plan is computed and shown
first; executing it commits the new offsets, which Kafka only accepts while the group has no
active members (stop the consumers first).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streams._kafka_errors import translate
from streams._reader import offsets_at, reader
from streams.admin import admin_client, partitions
from streams.errors import OffsetCommitError
from streams.settings import KafkaSettings


@dataclass(frozen=True)
class OffsetMove:
    topic: str
    partition: int
    current: int | None  # None: the group never committed on this partition
    target: int

    @property
    def move(self) -> int | None:
        """Signed offset change: negative moves back (records read again), positive skips."""
        return None if self.current is None else self.target - self.current

    @property
    def lag_change(self) -> int | None:
        """How many records the group will read again (positive) or skip (negative)."""
        return None if self.current is None else self.current - self.target


async def plan_reset_to_time(
    kafka: KafkaSettings, group: str, topic: str, at_ms: int
) -> list[OffsetMove]:
    return await plan_reset(kafka, group, topic, ResetTarget("time", at_ms))


@dataclass(frozen=True)
class ResetTarget:
    """Where to move: ``beginning``, ``end``, ``offset`` N, ``last`` N records, or ``time`` ms."""

    kind: str
    value: int = 0


async def plan_reset(
    kafka: KafkaSettings, group: str, topic: str, to: ResetTarget
) -> list[OffsetMove]:
    """The offsets ``group`` would have on ``topic`` after moving to ``to`` (clamped to the log)."""
    ids = (await partitions(kafka, [topic]))[topic]
    tps = [TopicPartition(topic, p) for p in ids]
    async with admin_client(kafka) as admin:
        try:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        except KafkaError as exc:
            raise translate(exc, f"reading the offsets of group {group}") from exc
    async with reader(kafka) as consumer:
        try:
            firsts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            if to.kind == "time":
                targets = await offsets_at(consumer, tps, to.value)
        except KafkaError as exc:
            raise translate(exc, f"looking up offsets of {topic}") from exc
    if to.kind != "time":
        targets = {tp: _target(to, firsts[tp], ends[tp]) for tp in tps}
    moves = []
    for tp in tps:
        meta = committed.get(tp)
        current = meta.offset if meta is not None and meta.offset >= 0 else None
        moves.append(OffsetMove(topic, tp.partition, current, targets[tp]))
    return moves


def _target(to: ResetTarget, first: int, end: int) -> int:
    if to.kind == "beginning":
        return first
    if to.kind == "end":
        return end
    if to.kind == "last":
        return max(first, end - to.value)
    return min(max(to.value, first), end)


async def execute_reset(kafka: KafkaSettings, group: str, moves: list[OffsetMove]) -> None:
    """Commit the planned offsets for ``group`` (refused by Kafka while the group is active)."""
    offsets = {
        TopicPartition(m.topic, m.partition): OffsetAndMetadata(m.target, "backbone groups reset")
        for m in moves
    }
    async with reader(kafka, group_id=group) as consumer:
        consumer.assign(list(offsets))
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            raise OffsetCommitError(
                f"group {group} did not accept the new offsets ({type(exc).__name__}); "
                "is it still running? Stop its consumers and try again"
            ) from exc
