"""A cluster fault run: gateway and worker processes on the 3-node cluster with only
``BACKBONE_KAFKA_BOOTSTRAP`` naming it, steady load on ``/v1/events`` and ``/v1/calls``, and a
fault (nodes killed, later started again) in the middle. :func:`run_cluster_fault` returns what
happened; the tests hold it against the oracle. The load and the settling of the outcomes are the
single-broker outage run's (tests/integration/outage/_fault.py)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agents.worker import KAFKA_STAGES
from infra.testing.cluster import ClusterKit
from streams.codec import Codec
from streams.inspect import describe_group
from streams.settings import RegistrySettings
from streams.topics import Catalogue
from tests.integration.outage._broker import eventually
from tests.integration.outage._fault import FaultReport, _settle, loaded_stack

#: Picks the nodes to kill, given the kit and the catalogue (e.g. the leader of a partition).
Victims = Callable[[ClusterKit, Catalogue], Awaitable[list[int]]]


@dataclass
class ClusterFaultReport(FaultReport):
    victims: list[int] = field(default_factory=list)
    signal_name: str = "SIGKILL"
    recovered_without_restart: bool = False  # a 2xx while the victims were still down
    final_lag: int | None = None

    def cluster_summary(self) -> str:
        return (
            f"killed {self.victims} with {self.signal_name}; 2xx while down: "
            f"{self.recovered_without_restart}; worker lag at the end {self.final_lag}; "
            + self.summary()
        )


async def run_cluster_fault(
    tmp_path: Path,
    kit: ClusterKit,
    codec: Codec,
    registry: RegistrySettings,
    catalogue: Catalogue,
    victims: Victims,
    *,
    down_s: float,
    sig: signal.Signals = signal.SIGKILL,
    expect_writes_while_down: bool = True,
) -> ClusterFaultReport:
    """``expect_writes_while_down``: wait (generously) for a 2xx while the victims are down
    before starting them again (one node of three down: the cluster must keep taking writes)."""
    report = ClusterFaultReport(down_s, signal_name=sig.name)
    kafka = kit.settings()
    async with loaded_stack(
        tmp_path, kit.bootstrap, registry, catalogue, report, ready_timeout_s=180
    ) as stack:
        began = time.monotonic()
        await eventually(lambda: stack.accepted_since(began), timeout_s=120)
        await asyncio.sleep(4)  # steady load before the fault
        report.victims = await victims(kit, catalogue)
        await asyncio.gather(*(kit.kill(node, sig) for node in report.victims))
        report.stopped_at = time.monotonic()
        if expect_writes_while_down:
            with contextlib.suppress(TimeoutError):
                await eventually(lambda: stack.accepted_since(report.stopped_at), timeout_s=120)
            report.recovered_without_restart = await stack.accepted_since(report.stopped_at)
        await asyncio.sleep(max(0.0, report.stopped_at + down_s - time.monotonic()))
        report.restarting_at = time.monotonic()
        report.restarted_wall = datetime.now(UTC)
        for node in report.victims:
            await kit.start(node)
        await eventually(lambda: stack.accepted_since(report.restarting_at), timeout_s=180)
        await asyncio.sleep(4)  # steady load after recovery
        await stack.stop_load()
        await _settle(report, kafka, codec, catalogue)
        report.final_lag = await _lag_settles(kit, f"{catalogue.prefix}calls")
    return report


async def _lag_settles(kit: ClusterKit, group: str, timeout_s: float = 240) -> int:
    """The worker's total lag over its consumer groups (``{group}.router|lanes|retry``) once it
    reached 0, or its last value at the deadline (-1: the router group never committed)."""
    last = -1

    async def caught_up() -> bool:
        nonlocal last
        states = [await describe_group(kit.settings(), f"{group}.{s}") for s in KAFKA_STAGES]
        last = sum(state.total_lag for state in states) if states[0].lags else -1
        return last == 0

    with contextlib.suppress(TimeoutError):
        await eventually(caught_up, timeout_s=timeout_s, pause_s=1.0)
    return last


async def leader_of_research_events(kit: ClusterKit, catalogue: Catalogue) -> list[int]:
    return [await kit.leader_of(catalogue.name("research.events"), 0)]


async def active_controller(kit: ClusterKit, catalogue: Catalogue) -> list[int]:
    return [await kit.active_controller()]


async def all_but_one(kit: ClusterKit, catalogue: Catalogue) -> list[int]:
    """Two of three nodes: no quorum, and fewer in-sync replicas than min.insync.replicas."""
    keep = await kit.leader_of(catalogue.name("research.events"), 0)
    return [n for n in kit.alive() if n != keep]
