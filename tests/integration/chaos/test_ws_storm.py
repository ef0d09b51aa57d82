"""Websocket storm (issue 16 section 3 item 6): a ``backbone gateway`` process serves ``GET /ws``
to many clients subscribed to ``research:*`` while research progress events are published: 10 %
of the clients stop reading, half of the others disconnect once mid-stream and resume from their
Kafka positions.

A reading client the server drops (slow consumer: a reader starved of CPU on a loaded box is
one) reconnects and resumes from its positions, as the protocol asks; the drops are printed.

Oracle: every client that kept reading (resumed or not) saw each published event exactly once
(0 gaps, 0 duplicates); the gateway's resident memory plateaus: its growth over the second half
of the stream stays under :data:`PLATEAU_BUDGET` (a leak per frame or per connection would grow
with the stream); the gateway stops cleanly. ``make chaos`` runs 200 clients
(``BACKBONE_CHAOS_WS_CLIENTS``, ``BACKBONE_CHAOS_WS_EVENTS`` override the sizes).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.realtime import mint
from infra.kafka.broker import free_port
from streams.codec import Codec
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.chaos._kit import rss_bytes, start_process, stop_process, wait_ready
from tests.integration.realtime._kit import KEY, Positions, new_id, progress

pytestmark = pytest.mark.integration

CHANNEL = "research:*"
#: gateway RSS growth allowed between the middle and the end of the stream
PLATEAU_BUDGET = 64 * 1024 * 1024

CONFIG = """
[realtime]
heartbeat_s = 60
"""


@dataclass
class StormClient:
    role: str  # "steady", "resume" or "stalled"
    got: list[tuple[str, int]] = field(default_factory=list)
    positions: Positions = field(default_factory=Positions)
    resumed: bool = False
    closed_with: int | None = None
    dropped: list[int | None] = field(default_factory=list)  # close codes the server gave it


def _take(client: StormClient, frame: dict[str, Any]) -> None:
    """Keep a frame's publication and position."""
    client.positions.update(frame)
    if frame["type"] == "publication" and frame["channel"] == CHANNEL:
        payload = frame["payload"]
        client.got.append((payload["research_id"], payload["steps_completed"]))


async def _subscribe(
    http: aiohttp.ClientSession, url: str, grant: str, client: StormClient
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url, heartbeat=None)
    await ws.send_str(json.dumps({"op": "auth", "token": grant}))
    frame: dict[str, Any] = {"op": "subscribe", "channel": CHANNEL}
    if client.positions.last:
        frame["since"] = client.positions.since()
    await ws.send_str(json.dumps(frame))
    async with asyncio.timeout(120):
        while True:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data)
            parsed = json.loads(message.data)
            _take(client, parsed)  # a resume's replayed publications come before `subscribed`
            if parsed["type"] == "subscribed":
                return ws
            assert parsed["type"] not in ("error", "resync_required"), parsed


async def _read(
    http: aiohttp.ClientSession,
    url: str,
    grant: str,
    client: StormClient,
    ws: aiohttp.ClientWebSocketResponse,
    total: int,
    resume_after: int,
) -> None:
    """Read publications until ``total``; a "resume" client leaves once after ``resume_after``."""
    while len(client.got) < total:
        message = await ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            # dropped (a reader starved of CPU on the loaded box is a slow consumer too): a client
            # reconnects and resumes from its positions, as the protocol tells it to
            client.dropped.append(ws.close_code)
            assert len(client.dropped) <= 20, f"a reading client was dropped 20 times: {client}"
            await asyncio.sleep(random.uniform(0.1, 1.0))
            ws = await _subscribe(http, url, grant, client)
            continue
        _take(client, json.loads(message.data))
        if client.role == "resume" and not client.resumed and len(client.got) >= resume_after:
            client.resumed = True
            await ws.close()
            await asyncio.sleep(random.uniform(0.1, 1.5))
            ws = await _subscribe(http, url, grant, client)
    await ws.close()


async def run_storm(
    tmp_path: Path,
    kafka: KafkaSettings,
    codec: Codec,
    registry: RegistrySettings,
    catalogue: Catalogue,
    clients: int,
    events: int,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "backbone.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_CONFIG": str(config),
        "BACKBONE_GATEWAY_PORT": str(port),
        "BACKBONE_GATEWAY_TOKENS": "storm=storm-token",
        "BACKBONE_WS_JWT_KEY": KEY,
        "BACKBONE_WS_ALLOWED_ORIGINS": "*",
        "BACKBONE_WS_MAX_CONNECTIONS_PER_TOKEN": str(clients * 2),
    }
    gateway = await start_process(["gateway"], env, tmp_path / "gateway.log")
    grant = mint(KEY, [CHANNEL], ttl_s=3600)
    stalled_n = max(1, clients // 10)
    roles = ["stalled"] * stalled_n + [
        "resume" if i % 2 else "steady" for i in range(clients - stalled_n)
    ]
    storm = [StormClient(role) for role in roles]
    runs = [new_id() for _ in range(16)]
    published = [(runs[i % len(runs)], i) for i in range(events)]
    samples: list[tuple[float, int]] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    try:
        await wait_ready(f"{base}/readyz", gateway)
        url = f"{base}/ws"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            sockets = [await _subscribe(http, url, grant, c) for c in storm]
            readers = [
                asyncio.create_task(
                    _read(http, url, grant, c, ws, events, random.randint(events // 4, events // 2))
                )
                for c, ws in zip(storm, sockets, strict=True)
                if c.role != "stalled"
            ]
            began = time.monotonic()
            async with Publisher(kafka, codec, catalogue) as publisher:
                for start in range(0, events, 50):
                    await publisher.publish_many(
                        [progress(rid, n) for rid, n in published[start : start + 50]]
                    )
                    samples.append((time.monotonic() - began, rss_bytes(gateway.pid)))
                    await asyncio.sleep(0.05)
            try:
                async with asyncio.timeout(max(300, events / 10)):
                    pending = set(readers)
                    while pending:
                        _, pending = await asyncio.wait(pending, timeout=0.5)
                        samples.append((time.monotonic() - began, rss_bytes(gateway.pid)))
                for task in readers:
                    task.result()  # a reader that failed names why
            except TimeoutError:
                got = sorted((c.role, len(set(c.got)), len(c.dropped)) for c in storm)
                raise AssertionError(
                    f"not every reading client got the {events} events; (role, distinct events "
                    f"read, times dropped) per client: {got}"
                ) from None
            finally:
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            for client, ws in zip(storm, sockets, strict=True):
                if client.role == "stalled":
                    client.closed_with = ws.close_code
                    await ws.close()
    finally:
        stopping = time.monotonic()
        code = await stop_process(gateway)
        stopped_in = time.monotonic() - stopping
    expected = sorted(published)
    bad = []
    for n, client in enumerate(storm):
        if client.role == "stalled":
            continue
        duplicates = len(client.got) - len(set(client.got))
        gaps = len(set(expected) - set(client.got))
        if duplicates or gaps:
            bad.append((n, client.role, duplicates, gaps))
    half = len(samples) // 2
    mid = max(r for _, r in samples[: max(1, half)])
    end = max(r for _, r in samples[half:])
    closed = [c.closed_with for c in storm if c.role == "stalled"]
    print(
        f"\n{clients} clients ({stalled_n} stalled, "
        f"{sum(c.resumed for c in storm)} resumed), {events} events: gateway RSS max first half "
        f"{mid / 2**20:.0f} MiB, second half {end / 2**20:.0f} MiB; stalled clients' close codes "
        f"{closed[:5]}...; reading clients dropped and resumed "
        f"{sum(bool(c.dropped) for c in storm)} (codes {sorted({d for c in storm for d in c.dropped}, key=str)}); "
        f"clients with gaps or duplicates {len(bad)}; the gateway stopped in {stopped_in:.1f} s"
    )
    assert not bad, f"(client, role, duplicates, gaps): {bad[:10]}"
    assert end - mid < PLATEAU_BUDGET, f"gateway RSS grew {(end - mid) / 2**20:.0f} MiB"
    log_tail = (tmp_path / "gateway.log").read_text(errors="replace")[-6000:]
    assert code == 0, (
        f"the gateway exited {code} on SIGTERM after {stopped_in:.0f} s; log:\n{log_tail}"
    )


@pytest.mark.timeout(900)
async def test_a_small_websocket_storm(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    await run_storm(tmp_path, kafka_settings, codec, schema_registry, catalogue, 20, 600)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
async def test_a_websocket_storm_of_200_clients(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    clients = int(os.environ.get("BACKBONE_CHAOS_WS_CLIENTS", "200"))
    events = int(os.environ.get("BACKBONE_CHAOS_WS_EVENTS", "5000"))
    await run_storm(tmp_path, kafka_settings, codec, schema_registry, catalogue, clients, events)
