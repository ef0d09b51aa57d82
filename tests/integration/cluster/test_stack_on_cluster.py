"""The whole stack on the 3-node cluster with only ``BACKBONE_KAFKA_BOOTSTRAP`` naming it (issue 16
section 2): `backbone up` applies the catalogue with replication 3, runs its registry, gateway and
worker there, and an event and a call go through. (The state dir and ports are set only so
parallel runs on one machine do not collide; a service is configured so the call has somewhere
to go.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from infra.kafka.broker import free_port
from infra.testing.cluster import ClusterKit
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.settings import RegistrySettings
from tests.integration.calls._support import TERMINAL
from tests.integration.outage._broker import eventually
from tests.integration.webhooks._kit import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONFIG = """
[[calls.services]]
name = "sim"
kind = "simulated"
"""


async def _lines_until_ready(stack: asyncio.subprocess.Process) -> list[str]:
    assert stack.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("ready") for line in lines):
        raw = await stack.stdout.readline()
        if not raw:
            raise AssertionError("`backbone up` ended before it was ready:\n" + "".join(lines))
        lines.append(raw.decode())
    return lines


async def test_the_stack_runs_on_the_cluster_with_only_the_bootstrap_set(
    tmp_path: Path, kafka_cluster: ClusterKit
) -> None:
    gateway_port, registry_port = free_port(), free_port()
    (tmp_path / "backbone.toml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    env |= {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_cluster.bootstrap,
        "BACKBONE_STATE_DIR": str(tmp_path / "state"),
        "BACKBONE_GATEWAY_PORT": str(gateway_port),
        "BACKBONE_REGISTRY_PORT": str(registry_port),
        "BACKBONE_GATEWAY_TOKENS": "cluster=cluster-token",
        "BACKBONE_CONFIG": str(tmp_path / "backbone.toml"),
    }
    stack = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra.cli", "up", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        lines = await asyncio.wait_for(_lines_until_ready(stack), 420)
        assert not any("kafka     127.0.0.1" in line for line in lines), "started its own broker"
        await _an_event_and_a_call_go_through(kafka_cluster, gateway_port, registry_port)
    finally:
        if stack.returncode is None:
            stack.send_signal(2)  # Ctrl-C
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stack.wait(), 120)
        if stack.returncode is None:
            stack.kill()
            await stack.wait()
    assert stack.returncode == 0


async def _an_event_and_a_call_go_through(
    kit: ClusterKit, gateway_port: int, registry_port: int
) -> None:
    base = f"http://127.0.0.1:{gateway_port}"
    auth = {"Authorization": "Bearer cluster-token"}
    research_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        step = {"research_id": research_id, "step_id": "s1", "step_kind": "search"}
        async with http.post(
            f"{base}/v1/events/research.step_started", json=step, headers=auth
        ) as answer:
            assert answer.status == 202, await answer.text()
            event_id = (await answer.json())["event_id"]
        call = {"service": "sim", "operation": "echo", "idempotency_key": research_id}
        async with http.post(f"{base}/v1/calls", json=call, headers=auth) as answer:
            assert answer.status in (200, 201, 202), await answer.text()
            call_id = (await answer.json())["call_id"]
    kafka = kit.settings()
    async with RegistryClient(RegistrySettings(url=f"http://127.0.0.1:{registry_port}")) as client:
        codec = Codec(client)
        events = await read_all(kafka, codec, "research.events")
        assert event_id in {str(e.event_id) for _, e, _ in events}

        async def outcome() -> bool:
            results = await read_all(kafka, codec, "calls.results")
            return any(
                e.event_type in TERMINAL and getattr(e, "call_id", None) == call_id
                for _, e, _ in results
            )

        await eventually(outcome, timeout_s=180, pause_s=1.0)
    state = await kit.state(["research.events"])
    assert all(len(p.replicas) == 3 for p in state.partitions), state.partitions
