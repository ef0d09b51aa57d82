"""Kill -9 the gateway while clients post: every request that got a 202 is in Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp
import pytest

from infra.kafka.broker import free_port
from streams import Subscriber
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json

pytestmark = pytest.mark.integration


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "the gateway exited before it was healthy"
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("the gateway did not become healthy")


async def _post_until_dead(
    url: str, client: int, accepted: list[str], enough: asyncio.Event
) -> int:
    """Post events one after another until the gateway stops answering; returns failures."""
    failures = 0
    headers = {"Authorization": "Bearer crash-token"}
    async with aiohttp.ClientSession() as session:
        for i in range(100_000):
            try:
                async with session.post(
                    f"{url}/v1/events/call.requested",
                    json=call_requested_json(client * 1_000_000 + i),
                    headers=headers,
                ) as response:
                    if response.status == 202:
                        accepted.append((await response.json())["event_id"])
                        if len(accepted) >= 200:
                            enough.set()
                    else:
                        failures += 1
            except (aiohttp.ClientError, ConnectionError):
                return failures
    return failures


async def test_every_202_survives_a_killed_gateway(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_GATEWAY_PORT": str(port),
        "BACKBONE_GATEWAY_TOKENS": "crash=crash-token",
        "BACKBONE_GATEWAY_RATE": "100000",
        "BACKBONE_GATEWAY_BURST": "100000",
    }
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "gateway",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    accepted: list[str] = []
    enough = asyncio.Event()
    try:
        await _wait_healthy(url, proc)
        clients = [
            asyncio.create_task(_post_until_dead(url, c, accepted, enough)) for c in range(8)
        ]
        await asyncio.wait_for(enough.wait(), 60)
        proc.send_signal(signal.SIGKILL)  # mid-flight: some requests are being processed
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert len(accepted) >= 200
    async with Subscriber(
        kafka_settings, codec, catalogue, ["calls.requests"], None, stop_at_end=True
    ) as sub:
        written = {str(r.event.event_id) async for r in sub}
    missing = set(accepted) - written
    assert not missing, f"{len(missing)} of {len(accepted)} acknowledged events are not in Kafka"
