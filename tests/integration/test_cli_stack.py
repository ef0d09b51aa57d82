"""Issue 14 items 4, 5 and 13: ports checked before anything starts (one line naming the
setting), ``backbone up`` reuses a healthy broker on its port, ``kafka status|down`` see the
broker ``backbone up`` started, and the banner warns when no client tokens are configured."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka.broker import free_port, metadata_ok
from infra.testing.pytest_plugin import unique
from streams.settings import KafkaSettings
from tests.integration._cli import backbone_sync, one_error_line

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on (not Kafka)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "BACKBONE_STATE_DIR": str(tmp_path),
        "BACKBONE_KAFKA_PORT": str(free_port()),
        "BACKBONE_REGISTRY_PORT": str(free_port()),
        "BACKBONE_GATEWAY_PORT": str(free_port()),
        "BACKBONE_TOPIC_PREFIX": unique("stack") + ".",
        "NO_COLOR": "1",
    }
    for name in ("BACKBONE_KAFKA_BOOTSTRAP", "BACKBONE_SCHEMA_REGISTRY_URL"):
        env.pop(name, None)
    return {**env, **extra}


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("BACKBONE_GATEWAY_PORT", "HTTP gateway"),
        ("BACKBONE_REGISTRY_PORT", "schema registry"),
    ],
)
def test_a_taken_service_port_is_one_line_naming_the_setting_before_anything_starts(
    tmp_path: Path, taken_port: int, setting: str, what: str
) -> None:
    env = _env(tmp_path, **{setting: str(taken_port)})
    done = backbone_sync(env, "up", timeout=120)
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"error: port {taken_port} on 127.0.0.1 ({what}) is already in use: stop what holds it "
        f"(`ss -ltnp | grep :{taken_port}`) or set {setting} to another port"
    )
    assert "kafka" not in done.stdout  # nothing was started
    assert not (tmp_path / "kafka").exists()


def test_a_kafka_port_held_by_something_else_names_both_settings(
    tmp_path: Path, taken_port: int
) -> None:
    done = backbone_sync(_env(tmp_path, BACKBONE_KAFKA_PORT=str(taken_port)), "up", timeout=120)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "BACKBONE_KAFKA_PORT" in line
    assert "BACKBONE_KAFKA_BOOTSTRAP" in line
    assert "{self.port}" not in line


def test_the_gateway_command_checks_its_port_too(tmp_path: Path, taken_port: int) -> None:
    done = backbone_sync(_env(tmp_path, BACKBONE_GATEWAY_PORT=str(taken_port)), "gateway")
    assert done.returncode == 1
    assert "set BACKBONE_GATEWAY_PORT to another port" in one_error_line(done)


def _until_ready(stack: subprocess.Popen[str]) -> list[str]:
    assert stack.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = stack.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready"):
            return lines
    raise AssertionError("stack did not get ready:\n" + "".join(lines))


def test_up_reuses_a_healthy_broker_on_its_port_and_leaves_it_running(
    tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    port = kafka_settings.bootstrap.rsplit(":", 1)[1]
    env = _env(tmp_path, BACKBONE_KAFKA_PORT=port)
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as stack:  # fmt: skip
        try:
            lines = _until_ready(stack)
            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=120) == 0
        finally:
            if stack.poll() is None:
                stack.kill()
    banner = "".join(lines)
    assert f"kafka     reusing the broker already answering on 127.0.0.1:{port}" in banner
    assert "warning: no client tokens (BACKBONE_GATEWAY_TOKENS)" in banner
    assert metadata_ok(kafka_settings.bootstrap)  # not ours to stop


def test_kafka_status_and_down_see_the_broker_up_started(tmp_path: Path) -> None:
    env = _env(tmp_path)
    port = env["BACKBONE_KAFKA_PORT"]
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as stack:  # fmt: skip
        try:
            _until_ready(stack)
            status = backbone_sync(env, "kafka", "status")
            assert status.returncode == 0, status.stderr
            assert f"127.0.0.1:{port}: up" in status.stdout
            assert f"started by backbone up (pid {stack.pid})" in status.stdout
            down = backbone_sync(env, "kafka", "down")
            assert down.returncode == 1
            assert "belongs to `backbone up`" in one_error_line(down)
            assert metadata_ok(f"127.0.0.1:{port}")  # refused: still running
            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=120) == 0
        finally:
            if stack.poll() is None:
                stack.kill()
    after = backbone_sync(env, "kafka", "status")
    assert after.returncode == 3
    assert "started by" not in after.stdout
