"""What the cluster says about topics and consumer groups (``topics describe``, ``groups``).

Read-only: partitions, leaders, offsets, topic configs that differ from the broker's defaults,
consumer groups with their committed offsets and lag.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams._aiokafka_compat import log_dir_sizes
from streams._kafka_errors import translate
from streams._reader import reader
from streams.admin import admin_client
from streams.settings import KafkaSettings

_TOPIC_OVERRIDE = 1  # DescribeConfigs config_source: DYNAMIC_TOPIC_CONFIG


@dataclass(frozen=True)
class PartitionState:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]
    start_offset: int
    end_offset: int
    #: Bytes on disk (its largest replica); None when the brokers did not say.
    size_bytes: int | None = None

    @property
    def records(self) -> int:
        """Offsets in the log (compaction and transaction markers make it an upper bound)."""
        return self.end_offset - self.start_offset


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: tuple[PartitionState, ...]
    overrides: dict[str, str]  # topic configs that differ from the broker's defaults


@dataclass(frozen=True)
class GroupLag:
    topic: str
    partition: int
    committed: int | None
    end_offset: int

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.end_offset - self.committed)


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str
    members: int
    lags: tuple[GroupLag, ...] = field(default=())

    @property
    def total_lag(self) -> int:
        return sum(lag.lag or 0 for lag in self.lags)


async def topic_names(kafka: KafkaSettings) -> list[str]:
    async with admin_client(kafka) as admin:
        try:
            return sorted(await admin.list_topics())
        except KafkaError as exc:
            raise translate(exc, "listing topics") from exc


def _overrides(entries: list[Any]) -> dict[str, str]:
    found = {}
    for entry in entries:
        # v0: (name, value, read_only, is_default, sensitive); v1+: (..., config_source, ...)
        source = entry[3]
        overridden = (source == _TOPIC_OVERRIDE) if not isinstance(source, bool) else not source
        if overridden and not entry[4]:
            found[entry[0]] = entry[1]
    return dict(sorted(found.items()))


async def topic_sizes(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Bytes on disk of each existing topic of ``topics`` (one replica of each partition)."""
    async with admin_client(kafka) as admin:
        try:
            described: list[dict[str, Any]] = await admin.describe_topics(topics)
            found = {
                t["topic"]: [p["partition"] for p in t["partitions"]]
                for t in described
                if t["error_code"] == 0
            }
            sizes = await log_dir_sizes(admin, found) if found else {}
        except KafkaError as exc:
            raise translate(exc, "describing the log dirs") from exc
    totals = dict.fromkeys(found, 0)
    for (topic, _), size in sizes.items():
        totals[topic] += size
    return totals


async def describe_topic(kafka: KafkaSettings, topic: str) -> TopicState | None:
    """The topic's live state, or ``None`` when the cluster has no such topic."""
    async with admin_client(kafka) as admin:
        try:
            described: list[dict[str, Any]] = await admin.describe_topics([topic])
            if not described or described[0]["error_code"] != 0:
                return None
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            numbers = [p["partition"] for p in described[0]["partitions"]]
            sizes = await log_dir_sizes(admin, {topic: numbers})
        except KafkaError as exc:
            raise translate(exc, f"describing {topic}") from exc
    overrides: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            overrides |= _overrides(resource[4])
    parts = sorted(described[0]["partitions"], key=lambda p: p["partition"])
    tps = [TopicPartition(topic, p["partition"]) for p in parts]
    async with reader(kafka) as consumer:
        try:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise translate(exc, f"reading the offsets of {topic}") from exc
    return TopicState(
        topic,
        tuple(
            PartitionState(
                p["partition"],
                p["leader"],
                tuple(p["replicas"]),
                tuple(p["isr"]),
                starts[tp],
                ends[tp],
                # A partition the brokers did not report yet (a new topic's log is created a
                # moment after its leader is announced) holds nothing if it has no offsets.
                sizes.get((topic, p["partition"]), 0 if ends[tp] == 0 else None),
            )
            for p, tp in zip(parts, tps, strict=True)
        ),
        overrides,
    )


async def group_names(kafka: KafkaSettings) -> list[str]:
    async with admin_client(kafka) as admin:
        try:
            return sorted(str(g[0]) for g in await admin.list_consumer_groups())
        except KafkaError as exc:
            raise translate(exc, "listing consumer groups") from exc


async def describe_group(kafka: KafkaSettings, group: str) -> GroupState:
    """State, member count, and per partition the committed offset, end offset and lag."""
    async with admin_client(kafka) as admin:
        try:
            responses = await admin.describe_consumer_groups([group])
            committed = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            raise translate(exc, f"describing group {group}") from exc
    state, members = "Unknown", 0
    for response in responses:
        for described in response.groups:
            # (error_code, group, state, protocol_type, protocol, members, ...)
            state, members = str(described[2]), len(described[5])
    by_topic: dict[str, list[TopicPartition]] = defaultdict(list)
    for tp in committed:
        by_topic[tp.topic].append(tp)
    lags: list[GroupLag] = []
    if committed:
        async with reader(kafka) as consumer:
            try:
                ends = await consumer.end_offsets(list(committed))
            except KafkaError as exc:
                raise translate(exc, f"reading end offsets for group {group}") from exc
        for tp in sorted(committed):
            offset = committed[tp].offset
            lags.append(GroupLag(tp.topic, tp.partition, offset if offset >= 0 else None, ends[tp]))
    return GroupState(group, state, members, tuple(lags))
