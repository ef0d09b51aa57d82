"""Consumer-group lag: how many records each group is behind the end of the partitions it reads."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams._kafka_errors import translate
from streams._reader import reader
from streams.admin import admin_client
from streams.settings import KafkaSettings


async def consumer_lag(kafka: KafkaSettings, groups: Iterable[str] | None = None) -> dict[str, int]:
    """Total lag per group (committed offset to end offset); every group the cluster knows when
    ``groups`` is None. A group that committed nothing yet is left out."""
    try:
        async with admin_client(kafka) as admin:
            names = (
                sorted(str(g[0]) for g in await admin.list_consumer_groups())
                if groups is None
                else list(groups)
            )
            committed = {g: await admin.list_consumer_group_offsets(g) for g in names}
        tps = sorted({tp for offsets in committed.values() for tp in offsets})
        if not tps:
            return {}
        async with reader(kafka) as consumer:
            ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
    except KafkaError as exc:
        raise translate(exc, "measuring consumer lag") from exc
    lag: dict[str, int] = {}
    for group, offsets in committed.items():
        valid = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        if valid:
            lag[group] = sum(max(0, ends[tp] - off) for tp, off in valid.items())
    return lag
