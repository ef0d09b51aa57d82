from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from infra.kafka.broker import free_port
from infra.testing.pytest_plugin import unique
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_backbone_registry_serves_and_doctor_sees_it(kafka_settings: KafkaSettings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_TOPIC_PREFIX": unique("cli") + ".",
        "BACKBONE_REGISTRY_PORT": str(port),
    }
    env.pop("BACKBONE_SCHEMA_REGISTRY_URL", None)
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "registry"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert f"http://127.0.0.1:{port}" in line, line + (
                server.stderr.read() if server.stderr else ""
            )
            assert "_schemas" in line
            began = time.monotonic()
            doctor = subprocess.run(
                [sys.executable, "-m", "infra.cli", "doctor", "--json"],
                capture_output=True, text=True, env=env, timeout=60, check=False,
            )  # fmt: skip
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            assert checks["registry"]["ok"], checks["registry"]
            assert time.monotonic() - began < 30
        finally:
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0
    # Once it stopped, doctor says how to start it.
    doctor = subprocess.run(
        [sys.executable, "-m", "infra.cli", "doctor", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert doctor.returncode == 1
    registry = {c["name"]: c for c in json.loads(doctor.stdout)}["registry"]
    assert not registry["ok"]
    assert "backbone registry" in registry["fix"]


def test_backbone_up_runs_the_registry(kafka_settings: KafkaSettings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_TOPIC_PREFIX": unique("up") + ".",
        "BACKBONE_REGISTRY_PORT": str(port),
    }
    env.pop("BACKBONE_SCHEMA_REGISTRY_URL", None)
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as stack:
        try:
            assert stack.stdout is not None
            lines: list[str] = []
            while not lines or not lines[-1].startswith("ready"):
                line = stack.stdout.readline()
                assert line, "".join(lines) + (stack.stderr.read() if stack.stderr else "")
                lines.append(line)
            assert any(line.startswith("registry") and f":{port}" in line for line in lines), lines
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as answer:
                assert json.loads(answer.read()) == {"compatibilityLevel": "BACKWARD_TRANSITIVE"}
        finally:
            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=30) == 0
