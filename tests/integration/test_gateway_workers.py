"""``BACKBONE_GATEWAY_WORKERS=2``: two gateway processes on one port, supervised by one parent.

Behaviour, not timing: both processes answer on the shared port, every 202 is in Kafka, and no
worker outlives its parent however the parent ends (Ctrl-C, a dead worker, ``kill -9``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from infra.kafka.broker import free_port
from streams import Subscriber
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json

pytestmark = pytest.mark.integration

TOKEN = "workers-token"
START_TIMEOUT_S = 240.0  # three Python processes importing everything on a loaded 2-core box


def _children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting until {what}")


class Pool:
    """``backbone gateway`` with two workers, in its own session (a terminal's process group)."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.workers: set[int] = set()

    async def ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.returncode is None, "the gateway exited while starting"
                try:
                    async with http.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail("the gateway with two workers did not become ready")
        self.workers = _children(self.proc.pid)
        assert len(self.workers) == 2, f"expected 2 worker processes, found {self.workers}"

    async def answering_pids(self) -> set[int]:
        """Which processes answer ``/healthz`` over fresh connections (the kernel spreads them).

        The first ``/readyz`` that answered came from one worker; the other may still be starting
        (the parent's own start waits for both, this test only sees the port), so keep asking
        until both answered or two minutes passed."""
        seen: set[int] = set()
        deadline = time.monotonic() + 120.0
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while not seen >= self.workers and time.monotonic() < deadline:
                async with http.get(f"{self.url}/healthz") as response:
                    seen.add((await response.json())["pid"])
                await asyncio.sleep(0.01)
        return seen

    async def kill(self) -> None:
        for pid in [self.proc.pid, *self.workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        await self.proc.wait()


@pytest.fixture
async def pool(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[Pool]:
    port = free_port()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_GATEWAY_PORT": str(port),
        "BACKBONE_GATEWAY_TOKENS": f"workers={TOKEN}",
        "BACKBONE_GATEWAY_RATE": "100000",
        "BACKBONE_GATEWAY_BURST": "100000",
        "BACKBONE_GATEWAY_WORKERS": "2",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra.cli", "gateway", env=env, start_new_session=True,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    started = Pool(proc, f"http://127.0.0.1:{port}")
    try:
        await started.ready()
        yield started
    finally:
        await started.kill()  # whatever a failed test left behind


async def _post_many(url: str, n: int) -> list[str]:
    """``n`` events, each on a fresh connection (so both workers take some); the 202s' ids."""
    accepted = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for i in range(n):
            async with http.post(
                f"{url}/v1/events/call.requested",
                json=call_requested_json(i),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                body = await response.json()
                assert response.status == 202, body
                accepted.append(body["event_id"])
    return accepted


async def test_two_workers_serve_one_port_and_stop_on_ctrl_c(
    pool: Pool, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    assert await pool.answering_pids() == pool.workers, "both workers answer on the shared port"
    accepted = await _post_many(pool.url, 40)

    os.killpg(pool.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
    assert await asyncio.wait_for(pool.proc.wait(), 120) == 0
    await _until(lambda: not any(_alive(p) for p in pool.workers), 30, "every worker exited")

    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], None, stop_at_end=True
    ) as sub:
        written = {str(r.event.event_id) async for r in sub}
    assert set(accepted) <= written, "every 202 of either worker is in Kafka"


async def test_a_dead_worker_stops_the_gateway_with_an_error(pool: Pool) -> None:
    dead, other = sorted(pool.workers)
    os.kill(dead, signal.SIGKILL)
    code = await asyncio.wait_for(pool.proc.wait(), 120)
    assert code != 0, "a worker that died is a failure, not a quiet shrink to one process"
    await _until(lambda: not _alive(other), 30, "the other worker was stopped too")


async def test_no_worker_outlives_a_killed_parent(pool: Pool) -> None:
    os.kill(pool.proc.pid, signal.SIGKILL)
    await pool.proc.wait()
    await _until(
        lambda: not any(_alive(p) for p in pool.workers), 60, "the kernel stopped the workers"
    )
