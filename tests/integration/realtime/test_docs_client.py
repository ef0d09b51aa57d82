"""The Python client of docs/realtime.md, run exactly as written: it follows a channel, and when
stopped and started again continues where it stopped (no repeat, no gap)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.gateway import GatewayService
from streams.events.monitoring import AlertRaised, Severity
from streams.producer import Publisher
from tests.integration.realtime._kit import new_id, saved_past, token

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "realtime.md"


def _python_client() -> str:
    text = DOC.read_text()
    section = text[text.index("## A Python client") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/realtime.md has a Python client"
    return match.group(1)


def _ids(lines: list[str], alerts: list[AlertRaised]) -> set[str]:
    return {a.alert_id for a in alerts for line in lines if a.alert_id in line}


def _alert() -> AlertRaised:
    return AlertRaised(alert_id=new_id("alert"), rule="r", severity=Severity.INFO, summary="s")


async def _lines(process: asyncio.subprocess.Process, count: int) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(90):
        while len(lines) < count:
            line = (await process.stdout.readline()).decode()
            assert line, "the client exited early"
            lines.append(line)
    return lines


async def _start(script: Path, gateway: GatewayService) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BACKBONE_WS_URL": f"ws://127.0.0.1:{gateway.bound_port}/ws",
        "BACKBONE_WS_TOKEN": token(["alerts"]),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "alerts",
        cwd=script.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )


async def _saved(path: Path) -> None:
    async with asyncio.timeout(90):
        while True:
            if await asyncio.to_thread(path.exists):
                return
            await asyncio.sleep(0.1)


def _positions(saved: Path) -> list[dict[str, Any]]:
    try:  # written then renamed by the client: never half a file
        return list(json.loads(saved.read_text()).values())
    except (OSError, ValueError):
        return []


async def _stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    await process.wait()


async def test_python_client_of_the_docs_follows_and_resumes(
    gateway: GatewayService, publisher: Publisher, tmp_path: Path
) -> None:
    script = tmp_path / "follow.py"
    script.write_text(_python_client())
    saved = tmp_path / "positions-alerts.json"
    first, second = [_alert() for _ in range(3)], [_alert() for _ in range(2)]

    process = await _start(script, gateway)
    try:
        await _saved(saved)  # subscribed: its positions are saved
        coords = [await publisher.publish(alert) for alert in first]
        got = await _lines(process, 3)
        await saved_past(lambda: _positions(saved), coords)  # handled, then saved
    finally:
        await _stop(process)
    assert [line.split()[0] for line in got] == ["monitoring.alert_raised"] * 3
    assert _ids(got, first) == {a.alert_id for a in first}

    for alert in second:  # while the client is stopped
        await publisher.publish(alert)
    process = await _start(script, gateway)
    try:
        resumed = await _lines(process, 2)
        extra = _alert()
        await publisher.publish(extra)
        (live,) = await _lines(process, 1)
    finally:
        await _stop(process)
    # what was published while it was stopped, and nothing it had already printed (keys spread
    # over partitions, so the order across alerts is not fixed)
    assert _ids(resumed, first + second) == {a.alert_id for a in second}
    assert extra.alert_id in live
