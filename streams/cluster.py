"""What a cluster looks like: its brokers, and the leader and in-sync replicas of each partition
(``backbone kafka status``); and the replication the catalogue gives new topics, which follows the
cluster's size."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams._kafka_errors import translate
from streams.errors import BackboneError
from streams.settings import KafkaSettings

#: Never more copies than this, however large the cluster.
MAX_REPLICATION = 3


def replication_for(brokers: int, configured: int | None = None) -> int:
    """The replication factor of a new topic: the configured one, else min(3, brokers)."""
    if configured is not None:
        return configured
    return max(1, min(MAX_REPLICATION, brokers))


def min_insync_for(replication: int) -> int:
    """``min.insync.replicas`` for a replication factor: 2 of 3 or more (an acknowledged write
    survives the loss of any one broker, and writes go on while one is down), else 1."""
    return 2 if replication >= 3 else 1


@dataclass(frozen=True)
class BrokerNode:
    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PartitionReplicas:
    topic: str
    partition: int
    leader: int  # -1: no leader (no replica of it is alive)
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.in_sync) < len(self.replicas)


@dataclass(frozen=True)
class ClusterState:
    cluster_id: str
    #: What the cluster reports as controller. Under KRaft clients are given an alive broker here,
    #: not the active controller of the quorum (only the quorum itself knows that).
    controller_id: int
    brokers: tuple[BrokerNode, ...]  # the brokers that are alive now
    partitions: tuple[PartitionReplicas, ...]

    def leader_of(self, topic: str, partition: int) -> int:
        for p in self.partitions:
            if p.topic == topic and p.partition == partition:
                return p.leader
        raise KeyError(f"{topic}[{partition}] is not in this state")


async def broker_count(admin: AIOKafkaAdminClient) -> int:
    """How many brokers the cluster has alive now."""
    described: dict[str, Any] = await admin.describe_cluster()
    return len(described["brokers"])


async def _state(admin: AIOKafkaAdminClient, topics: Iterable[str] | None) -> ClusterState:
    cluster: dict[str, Any] = await admin.describe_cluster()
    names = sorted(topics) if topics is not None else sorted(await admin.list_topics())
    described: list[dict[str, Any]] = await admin.describe_topics(names) if names else []
    partitions = [
        PartitionReplicas(
            t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"])
        )
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    ]
    return ClusterState(
        cluster_id=str(cluster.get("cluster_id") or ""),
        controller_id=int(cluster.get("controller_id", -1)),
        brokers=tuple(
            sorted(
                (BrokerNode(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]),
                key=lambda b: b.node_id,
            )
        ),
        partitions=tuple(sorted(partitions, key=lambda p: (p.topic, p.partition))),
    )


async def cluster_state(
    kafka: KafkaSettings, topics: Iterable[str] | None = None, attempts: int = 3
) -> ClusterState:
    """Brokers, and leader/replicas/ISR of every partition of ``topics`` (default: all topics).

    A node that just died may still be in the metadata the client was given; a retriable error
    is tried again (up to ``attempts`` times) with a fresh client, which asks another node."""
    from streams.admin import admin_client

    names = None if topics is None else list(topics)
    for attempt in range(1, attempts + 1):
        try:
            async with admin_client(kafka) as admin:
                try:
                    return await _state(admin, names)
                except KafkaError as exc:
                    raise translate(exc, "describing the cluster") from exc
        except BackboneError as exc:
            if not exc.retriable or attempt == attempts:
                raise
            await asyncio.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
