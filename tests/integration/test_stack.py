"""`backbone up` (what `make run` calls): starts the stack, Ctrl-C stops it and leaves no broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.kafka.broker import free_port, metadata_ok

pytestmark = pytest.mark.integration


def _java_children(state_dir: Path) -> list[str]:
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if "kafka.Kafka" in line and str(state_dir) in line]


def test_up_then_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BACKBONE_STATE_DIR": str(tmp_path),
        "BACKBONE_KAFKA_PORT": str(port),
        "BACKBONE_REGISTRY_PORT": str(free_port()),
        "BACKBONE_GATEWAY_PORT": str(free_port()),
    }
    env.pop("BACKBONE_KAFKA_BOOTSTRAP", None)
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as stack:
        try:
            _ready_then_interrupt(stack, port, tmp_path)
        finally:
            if stack.poll() is None:
                stack.kill()
    assert not _java_children(tmp_path)
    assert not metadata_ok(f"127.0.0.1:{port}", timeout=1.0)


def _ready_then_interrupt(stack: subprocess.Popen[str], port: int, tmp_path: Path) -> None:
    assert stack.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = stack.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready"):
            break
    assert any(line.startswith("ready") for line in lines), "".join(lines)
    assert metadata_ok(f"127.0.0.1:{port}")
    assert _java_children(tmp_path), "the broker should be running under the state dir"
    stack.send_signal(signal.SIGINT)
    assert stack.wait(timeout=60) == 0, stack.stdout.read()
