"""A real multi-node Kafka cluster on loopback: N combined broker+controller KRaft nodes forming a
static quorum, each with its own ports and data folder. Topics get replication min(3, N) and
``min.insync.replicas`` 2 (on 3 nodes), as in production.

Used by ``backbone kafka up --brokers 3`` and the ``kafka_cluster`` test fixture, which kill and
restart single nodes to prove what survives leader and controller failures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from infra.errors import BrokerError
from infra.kafka.broker import BrokerOptions, LocalBroker, Quorum, _cluster_id, free_port
from streams.cluster import ClusterState, cluster_state
from streams.settings import KafkaSettings


@dataclass(frozen=True)
class ClusterOptions:
    size: int = 3
    heap: str = "256m"  # per node: several JVMs share a small machine
    data_dir: Path | None = None  # None = a fresh temporary folder, removed on stop
    #: Client port of node 1; the others follow (+1, +2...). 0 = every port picked free.
    base_port: int = 0
    die_with_parent: bool = True
    sasl_users: tuple[tuple[str, str], ...] = ()
    quick_start: bool = False  # see BrokerOptions.quick_start


class LocalCluster:
    """``start()`` returns once every node answers and sees all brokers. Nodes are numbered from
    1; ``kill``/``start_node`` inject and heal faults; ``stop()`` never leaves a JVM behind."""

    def __init__(self, options: ClusterOptions | None = None, cache_dir: Path | None = None):
        self.options = options or ClusterOptions()
        if self.options.size < 1:
            raise BrokerError(f"a cluster needs at least one node, not {self.options.size}")
        self._own_dir = self.options.data_dir is None
        self.root = self.options.data_dir or Path(tempfile.mkdtemp(prefix="backbone-cluster-"))
        ids = range(1, self.options.size + 1)
        base = self.options.base_port
        ports = {n: (base + n - 1 if base else free_port(), free_port()) for n in ids}
        voters = ",".join(f"{n}@127.0.0.1:{ports[n][1]}" for n in ids)
        cluster_id = _cluster_id()
        self.nodes: dict[int, LocalBroker] = {
            n: LocalBroker(
                BrokerOptions(
                    port=ports[n][0],
                    controller_port=ports[n][1],
                    heap=self.options.heap,
                    data_dir=self.root / f"node-{n}",
                    die_with_parent=self.options.die_with_parent,
                    sasl_users=self.options.sasl_users,
                    quick_start=self.options.quick_start,
                    parent_death_signal=signal.SIGKILL if self._own_dir else signal.SIGTERM,
                ),
                cache_dir,
                Quorum(n, voters, cluster_id, self.options.size),
            )
            for n in ids
        }
        self.startup_seconds: float | None = None
        # Nodes die with the *thread* that started them (PR_SET_PDEATHSIG is per thread), and
        # tests restart nodes from short-lived worker threads (asyncio.to_thread): every node is
        # launched from this one thread instead, which lives until stop().
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-launcher")

    def _launch(self, node: LocalBroker) -> None:
        self._launcher.submit(node.launch).result()

    @property
    def bootstrap(self) -> str:
        """Every node's client listener, comma-separated (clients survive any one node down)."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def sasl_bootstrap(self) -> str:
        return ",".join(node.sasl_bootstrap for node in self.nodes.values())

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=self.bootstrap)

    def node(self, node_id: int) -> LocalBroker:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise BrokerError(f"no node {node_id}; nodes are {sorted(self.nodes)}") from None

    def alive(self) -> list[int]:
        return [n for n, node in self.nodes.items() if node.alive]

    def pids(self) -> dict[int, int]:
        return {n: node.process.pid for n, node in self.nodes.items() if node.process is not None}

    def start(self, timeout: float = 180.0) -> float:
        """Launch every node, then wait until each answers and the cluster lists all brokers."""
        began = time.monotonic()
        try:
            for node in self.nodes.values():
                self._launch(node)
            for node in self.nodes.values():
                node.wait_ready(timeout, began)
            self._await_brokers(self.options.size, began + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.startup_seconds

    def _await_brokers(self, count: int, deadline: float) -> None:
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(asyncio.run(cluster_state(self.settings, topics=[])).brokers)
            except Exception:  # not answering yet: poll again
                seen = 0
            if seen >= count:
                return
            time.sleep(0.3)
        raise BrokerError(f"the cluster lists {seen} of {count} brokers after its start deadline")

    def kill(self, node_id: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to one node and wait until it has exited (its data is kept)."""
        self.node(node_id).kill(sig)

    def start_node(self, node_id: int, timeout: float = 300.0) -> float:
        """Start a stopped node again on its ports with its data; returns once it answers."""
        node = self.node(node_id)
        if node.alive:
            return 0.0
        began = time.monotonic()
        self._launch(node)
        return node.wait_ready(timeout, began)

    def heal(self, timeout: float = 300.0) -> None:
        """Start every node that is down, and wait until the cluster lists all brokers again."""
        began = time.monotonic()
        down = [n for n, node in self.nodes.items() if not node.alive]
        for n in down:
            self._launch(self.nodes[n])
        for n in down:
            self.nodes[n].wait_ready(timeout, began)
        self._await_brokers(self.options.size, began + timeout)

    async def state(self, topics: list[str] | None = None) -> ClusterState:
        return await cluster_state(self.settings, topics)

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node leading ``topic[partition]`` now (-1: none)."""
        return (await self.state([topic])).leader_of(topic, partition)

    def active_controller(self) -> int:
        """The node leading the KRaft quorum now (see :func:`active_controller`)."""
        alive = {n: node.root / "data" for n, node in self.nodes.items() if node.alive}
        leader = active_controller(alive)
        if leader is None:
            raise BrokerError("no live node knows an active controller yet")
        return leader

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node: SIGTERM to all at once (one by one, the last ones would wait for a
        quorum that is gone), SIGKILL what still runs after ``timeout``; remove the data folder
        if we created it."""
        running = [node for node in self.nodes.values() if node.alive]
        for node in running:
            node.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            node.kill(signal.SIGTERM, timeout=max(0.1, deadline - time.monotonic()))
        self._launcher.shutdown(wait=True)
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def active_controller(data_dirs: dict[int, Path]) -> int | None:
    """The leader of the KRaft quorum according to the quorum state each live voter keeps in
    ``<log dir>/__cluster_metadata-0/quorum-state``: the leader of the highest epoch, if that
    node is among ``data_dirs`` (the live nodes); None while an election is under way."""
    best: tuple[int, int] = (-1, -1)  # (epoch, leader)
    for data in data_dirs.values():
        try:
            state = json.loads((data / "__cluster_metadata-0" / "quorum-state").read_text())
        except (OSError, ValueError):
            continue
        leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
        if leader >= 0 and epoch > best[0]:
            best = (epoch, leader)
    return best[1] if best[1] in data_dirs else None
