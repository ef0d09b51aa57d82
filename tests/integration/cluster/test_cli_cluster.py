"""`backbone kafka up --brokers 3`, `kafka status` and `kafka down` (issue 16 section 2): a detached
3-node cluster, its nodes with the active controller, leaders and ISR per partition, a node that
went down shown as DOWN with its partitions under-replicated, and nothing left running.
It starts a cluster of its own (besides the session's), so it runs with ``make chaos``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.kafka.broker import free_port, port_in_use
from infra.testing.pytest_plugin import unique

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]


def _cli(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and not any(port_in_use(base + n) for n in range(count)):
            return base
    raise AssertionError("no run of free ports")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_status_down_of_a_three_node_cluster(tmp_path: Path) -> None:
    base = _consecutive_free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    env |= {
        "BACKBONE_STATE_DIR": str(tmp_path),
        "BACKBONE_KAFKA_PORT": str(base),
        "BACKBONE_KAFKA_HEAP": "256m",
    }
    up = _cli(env, "kafka", "up", "--brokers", "3", "--json")
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    pids = [int(node["pid"]) for node in state["nodes"].values()]
    try:
        assert state["bootstrap"] == ",".join(f"127.0.0.1:{base + n}" for n in range(3))
        prefix = unique("cli") + "."
        applied = _cli(env | {"BACKBONE_TOPIC_PREFIX": prefix}, "topics", "apply")
        assert applied.returncode == 0, applied.stderr

        status = _cli(env, "kafka", "status", "--topic", prefix + "research.events", timeout=120)
        assert status.returncode == 0, status.stderr
        out = status.stdout
        assert "3 of 3 brokers up" in out, out
        assert out.count("active controller") == 1, out
        rows = [line for line in out.splitlines() if "research.events[" in line]
        assert len(rows) == 6, out
        assert all("replicas" in r and "isr" in r and "UNDER" not in r for r in rows), out

        os.kill(pids[2], signal.SIGKILL)  # node 3
        deadline = time.monotonic() + 180
        while True:
            status = _cli(env, "kafka", "status", "--topic", prefix + "research.events", "--json")
            assert status.returncode == 0, status.stderr
            data = json.loads(status.stdout)
            parts = data["partitions"]
            if len(data["brokers"]) == 2 and all(3 not in p["in_sync"] for p in parts):
                break
            assert time.monotonic() < deadline, status.stdout
            time.sleep(2)
        assert all(p["leader"] in (1, 2) for p in parts), parts
        human = _cli(env, "kafka", "status", "--topic", prefix + "research.events").stdout
        [node3] = [line for line in human.splitlines() if line.strip().startswith("node 3")]
        assert "DOWN" in node3, human
        assert "6 under-replicated" in human, human
    finally:
        down = _cli(env, "kafka", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "stopped cluster" in down.stdout
    assert not any(_alive(pid) for pid in pids)
    assert _cli(env, "kafka", "status", timeout=60).returncode != 0
