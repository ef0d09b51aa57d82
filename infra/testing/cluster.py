"""The test kit's view of a local multi-node cluster: async fault injection for tests.

A test gets a :class:`ClusterKit` from the ``kafka_cluster`` fixture; every node runs when the test
begins, and whatever the test killed is started again when it ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

from infra.kafka.cluster import LocalCluster
from streams.cluster import ClusterState
from streams.errors import BackboneError
from streams.settings import KafkaSettings

T = TypeVar("T")


async def served(operation: Callable[[], Awaitable[T]], timeout_s: float = 120.0) -> T:
    """Run ``operation`` until the cluster serves it: retriable Kafka errors (a node down, a
    leader or the controller moving, a request timing out meanwhile) are tried again for up to
    ``timeout_s``; anything else is raised at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await operation()
        except (KafkaError, BackboneError, TimeoutError) as exc:
            retriable = isinstance(exc, TimeoutError) or getattr(exc, "retriable", False)
            if not retriable or loop.time() > deadline:
                raise
        await asyncio.sleep(1.0)


class ClusterKit:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def size(self) -> int:
        return len(self.cluster.nodes)

    def settings(self, **overrides: object) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.bootstrap, client_id="backbone-tests", linger_ms=0
        ).model_copy(update=overrides)

    async def kill(self, node: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """``kill -9`` (default) or SIGTERM one node; returns once its process has exited."""
        await asyncio.to_thread(self.cluster.kill, node, sig)

    async def start(self, node: int) -> None:
        """Start a stopped node again with its data; returns once it answers."""
        await asyncio.to_thread(self.cluster.start_node, node)

    async def heal(self) -> None:
        """Start every stopped node; returns once the cluster lists every broker."""
        await asyncio.to_thread(self.cluster.heal)

    def alive(self) -> list[int]:
        return self.cluster.alive()

    async def state(self, topics: list[str] | None = None) -> ClusterState:
        """Brokers and partition leaders/ISR, retried while a fault makes a node unreachable."""
        return await served(lambda: self.cluster.state(topics))

    async def leader_of(self, topic: str, partition: int = 0, timeout_s: float = 60.0) -> int:
        """The node leading ``topic[partition]`` (-1: none). A topic created a moment ago may
        not have reached every node's metadata yet: asked again until it has."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    return (await self.state([topic])).leader_of(topic, partition)
                except KeyError:
                    await asyncio.sleep(0.5)

    async def active_controller(self, timeout_s: float = 60.0) -> int:
        """The node leading the KRaft quorum (waits while an election is under way)."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    return self.cluster.active_controller()
                except Exception:  # election under way: ask again
                    await asyncio.sleep(0.5)

    async def stop(self) -> None:
        await asyncio.to_thread(self.cluster.stop)
