"""Drive the real ``backbone`` command as a subprocess (what a user types), against the test broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue


def cli_env(
    kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue, state_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_STATE_DIR": str(state_dir),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def backbone_sync(
    env: dict[str, str], *args: str, timeout: float = 180, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def backbone(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so the test's event loop (and its fixtures) keep running."""
    return await asyncio.to_thread(backbone_sync, env, *args, timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line a failed command prints (and nothing else on stderr)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]
