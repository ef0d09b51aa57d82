"""The JavaScript client of docs/realtime.md, run with node as written: it follows a channel, and a
client started again with the positions it saved continues where it stopped (no repeat, no gap).

Only the example's placeholders are filled in (the URL and the token of its last line). Node has
no ``localStorage``; a small stand-in kept in a file plays the browser's, so a restarted client
finds its positions as a reloaded page would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connectors.gateway import GatewayService
from infra.testing.system import require_program
from streams.events.monitoring import AlertRaised, Severity
from streams.producer import Publisher
from tests.integration.realtime._kit import new_id, saved_past, token

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "realtime.md"
URL = '"ws://127.0.0.1:8080/ws"'
TOKEN = '"eyJ..."'

LOCAL_STORAGE = """// the browser's localStorage, kept in a file (node has none)
const fs = require("fs");
const FILE = process.env.STORE;
const store = fs.existsSync(FILE) ? JSON.parse(fs.readFileSync(FILE, "utf8")) : {};
const save = () => {  // whole or not at all: the client may be stopped at any moment
  fs.writeFileSync(FILE + ".new", JSON.stringify(store));
  fs.renameSync(FILE + ".new", FILE);
};
globalThis.localStorage = {
  getItem: (key) => (key in store ? store[key] : null),
  setItem: (key, value) => { store[key] = String(value); save(); },
  removeItem: (key) => { delete store[key]; save(); },
};
"""


def _node() -> str:
    node = require_program("node")
    probe = [
        node,
        "--experimental-websocket",
        "-e",
        "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
    ]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        pytest.fail(f"{node} has no WebSocket: install Node.js 20.10 or later (`make system-deps`)")
    return node


def _js_client() -> str:
    text = DOC.read_text()
    section = text[text.index("## A JavaScript client") :]
    match = re.search(r"```js\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/realtime.md has a JavaScript client"
    code = match.group(1)
    assert code.count(URL) == 1, "the example's URL placeholder moved"
    assert code.count(TOKEN) == 1, "the example's token placeholder moved"
    filled = code.replace(URL, "process.env.BACKBONE_WS_URL")
    return LOCAL_STORAGE + filled.replace(TOKEN, "process.env.BACKBONE_WS_TOKEN")


def _alert() -> AlertRaised:
    return AlertRaised(alert_id=new_id("alert"), rule="r", severity=Severity.INFO, summary="s")


class Client:
    """The node process and everything it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.text = ""

    async def until(self, *needles: str) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(90):
            while not all(n in self.text for n in needles):
                chunk = await self.process.stdout.read(4096)
                assert chunk, f"the client exited early:\n{self.text}"
                self.text += chunk.decode()

    async def stop(self) -> None:
        self.process.terminate()
        await self.process.wait()


async def _start(node: str, script: Path, store: Path, gateway: GatewayService) -> Client:
    env = {
        **os.environ,
        "BACKBONE_WS_URL": f"ws://127.0.0.1:{gateway.bound_port}/ws",
        "BACKBONE_WS_TOKEN": token(["alerts"]),
        "STORE": str(store),
    }
    process = await asyncio.create_subprocess_exec(
        node,
        "--experimental-websocket",
        "--no-warnings",
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    return Client(process)


def _read(store: Path) -> dict[str, str]:
    try:  # the client may be writing it right now
        saved: dict[str, str] = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return saved


def _saved_positions(store: Path) -> list[dict[str, Any]]:
    text = _read(store).get("pos:alerts")
    return list(json.loads(text).values()) if text else []


async def _positions_saved(store: Path) -> None:
    async with asyncio.timeout(90):
        while True:
            if (await asyncio.to_thread(_read, store)).get("pos:alerts"):
                return
            await asyncio.sleep(0.1)


async def test_javascript_client_of_the_docs_follows_and_resumes(
    gateway: GatewayService, publisher: Publisher, tmp_path: Path
) -> None:
    node = _node()
    script, store = tmp_path / "follow.js", tmp_path / "local-storage.json"
    script.write_text(_js_client())
    first, second = [_alert() for _ in range(3)], [_alert() for _ in range(2)]

    client = await _start(node, script, store, gateway)
    try:
        await _positions_saved(store)  # subscribed: its positions are saved
        coords = [await publisher.publish(alert) for alert in first]
        await client.until(*(a.alert_id for a in first))
        await saved_past(lambda: _saved_positions(store), coords)  # handled, then saved
    finally:
        await client.stop()
    assert client.text.count("monitoring.alert_raised") == 3

    for alert in second:  # while the client is stopped
        await publisher.publish(alert)
    again = await _start(node, script, store, gateway)
    try:
        await again.until(*(a.alert_id for a in second))
        extra = _alert()
        await publisher.publish(extra)
        await again.until(extra.alert_id)
    finally:
        await again.stop()
    # what was published while it was stopped, then live; nothing it had already printed
    assert all(a.alert_id not in again.text for a in first), again.text
    assert all(again.text.count(a.alert_id) == 1 for a in [*second, extra]), again.text
    assert again.text.count("monitoring.alert_raised") == 3
