"""`backbone up` when its own broker dies (issue 14 item 1): one line says so, every service is
stopped, the exit code is non-zero, and nothing floods the terminal or is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.kafka.broker import free_port
from tests.integration.test_stack import _java_children

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _broker_pid(state_dir: Path) -> int:
    [line] = _java_children(state_dir)
    return int(line.split()[0])


def test_a_dead_broker_stops_the_stack_with_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BACKBONE_STATE_DIR": str(tmp_path),
        "BACKBONE_KAFKA_PORT": str(free_port()),
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
        assert stack.stdout is not None
        try:
            lines: list[str] = []
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and not any(
                line.startswith("ready") for line in lines
            ):
                line = stack.stdout.readline()
                if not line:
                    break
                lines.append(line)
            assert any(line.startswith("ready") for line in lines), "".join(lines)
            os.kill(_broker_pid(tmp_path), signal.SIGTERM)
            code = stack.wait(timeout=240)
            rest = stack.stdout.read()
        finally:
            if stack.poll() is None:
                stack.kill()
    assert code != 0, rest
    said = [line for line in rest.splitlines() if "Kafka broker" in line and "exited" in line]
    assert len(said) >= 1, rest
    assert "Traceback" not in rest, rest
    assert "Task was destroyed" not in rest, rest
    assert "CancelledError" not in rest, rest
    assert len(rest.splitlines()) < 200, f"{len(rest.splitlines())} lines after the broker died"
    assert "stopped" in rest
    assert not _java_children(tmp_path)
