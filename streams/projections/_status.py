"""Where a projection stands: per source partition, its checkpoint, the group's offset, the lag."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams._kafka_errors import translate
from streams._reader import reader
from streams.admin import admin_client, partitions
from streams.projections._model import CHECKPOINT_KEY, Projection, group_of
from streams.projections._runner import store_path
from streams.projections._store import SqliteStore
from streams.settings import KafkaSettings
from streams.topics import Catalogue


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    checkpoint: int | None  # next offset per the local store (None: no store or never applied)
    committed: int | None  # next offset per the consumer group
    end: int

    @property
    def lag(self) -> int:
        done = self.checkpoint if self.checkpoint is not None else (self.committed or 0)
        return max(0, self.end - done)


def _checkpoints(path: Path) -> dict[tuple[str, int], int]:
    if not path.exists():
        return {}
    store = SqliteStore(path)
    try:
        return {
            (topic, task): int(offset)
            for task, _, value in store.items(prefix=CHECKPOINT_KEY)
            for topic, offset in value.items()
        }
    finally:
        store.close()


async def lag(
    kafka: KafkaSettings,
    catalogue: Catalogue,
    projection: Projection,
    store_dir: Path,
    group_id: str | None = None,
) -> list[PartitionLag]:
    sources = [catalogue.name(t) for t in projection.sources]
    found = await partitions(kafka, sources)
    tps = [TopicPartition(t, p) for t in sources for p in found[t]]
    group = group_id or group_of(kafka, catalogue, projection)
    for attempt in range(10):
        try:
            async with admin_client(kafka) as admin:
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            async with reader(kafka) as consumer:
                ends = await consumer.end_offsets(tps)
            break
        except KafkaError as exc:
            # a young cluster has no group coordinator for a moment: retriable errors are retried
            if not getattr(exc, "retriable", False) or attempt == 9:
                raise translate(exc, f"reading the offsets of {projection.name}") from exc
            await asyncio.sleep(0.5 * (attempt + 1))
    local = _checkpoints(store_path(store_dir, projection.name))
    out = []
    for tp in tps:
        meta = committed.get(tp)
        out.append(
            PartitionLag(
                tp.topic,
                tp.partition,
                local.get((tp.topic, tp.partition)),
                meta.offset if meta is not None and meta.offset >= 0 else None,
                ends[tp],
            )
        )
    return out
