"""Soak (issue 16 section 3 item 7, ``make soak``): the gateway and a call worker, in this
process, under steady load on ``/v1/events`` and ``/v1/calls`` for ``BACKBONE_SOAK_MINUTES``
(default 30) at ``BACKBONE_SOAK_RATE`` requests per second of each kind (default 20).

Oracle: after a warm-up, the process's resident memory, open file descriptors and asyncio task
count are sampled as the baseline; once the load stops and the worker's lag is back to 0 they
are within :data:`RSS_SLACK`, :data:`FD_SLACK` and :data:`TASK_SLACK` of it; the worker's lag
sampled every 5 s stays under 60 s of load; every 2xx answer's event is in ``research.events``
(the accepted ids go to a file, so the oracle's own memory does not grow with the run).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from agents.settings import WorkerSettings
from connectors.calls_api import calls_extension
from connectors.gateway import GatewayService, GatewaySettings, build_gateway
from connectors.settings import ServiceSettings
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import running_worker
from tests.integration.chaos._kit import (
    AUTH,
    TOKEN,
    lag_settles,
    open_fds,
    rss_bytes,
    total_lag,
    worker_groups,
)
from tests.integration.webhooks._kit import read_all

RSS_SLACK = 64 * 1024 * 1024
FD_SLACK = 8
TASK_SLACK = 8


def _gauges() -> tuple[int, int, int]:
    gc.collect()
    return rss_bytes(os.getpid()), open_fds(os.getpid()), len(asyncio.all_tasks())


async def _load(url: str, body: dict[str, str], fresh: str, rate: float, until: float,
                accepted: Path | None, counts: dict[str, int]) -> None:  # fmt: skip
    """``rate`` requests per second until ``until``; ids of accepted events appended to a file."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        n = 0
        began = time.monotonic()
        while time.monotonic() < until:
            n += 1
            async with http.post(url, json={**body, fresh: uuid.uuid4().hex}, headers=AUTH) as r:
                answer = await r.json(content_type=None)
                key = str(r.status)
                counts[key] = counts.get(key, 0) + 1
                if accepted is not None and 200 <= r.status < 300:
                    with accepted.open("a") as sink:
                        sink.write(f"{answer['event_id']}\n")
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))


@pytest.mark.soak
@pytest.mark.timeout(0)
async def test_soak(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    minutes = float(os.environ.get("BACKBONE_SOAK_MINUTES", "30"))
    rate = float(os.environ.get("BACKBONE_SOAK_RATE", "20"))
    warmup_s = min(60.0, minutes * 60 / 6)
    group = f"{catalogue.prefix}calls"
    service = ServiceSettings(name="sim", kind="simulated", options={"latency_s": "0.005"})
    settings = WorkerSettings(group_id=group, services=(service,))
    app = build_gateway(
        GatewaySettings(
            port=0, tokens={"soak": SecretStr(TOKEN)}, rate_per_s=10 * rate, burst=int(10 * rate)
        ),
        kafka_settings,
        schema_registry,
        catalogue,
        extensions=[calls_extension(kafka_settings, schema_registry, catalogue, services=["sim"])],
    )
    gateway = GatewayService(app, "127.0.0.1", 0)
    await gateway.start()
    accepted = tmp_path / "accepted.txt"
    counts: dict[str, int] = {}
    lags: list[int] = []
    try:
        async with running_worker(kafka_settings, codec, catalogue, settings):
            base = f"http://127.0.0.1:{gateway.bound_port}"
            until = time.monotonic() + minutes * 60
            step = {"research_id": "", "step_id": "s1", "step_kind": "search"}
            call = {"service": "sim", "operation": "chat", "idempotency_key": ""}
            load = [
                asyncio.create_task(_load(f"{base}/v1/events/research.step_started", step,
                                          "research_id", rate, until, accepted, counts)),
                asyncio.create_task(_load(f"{base}/v1/calls", call, "idempotency_key", rate,
                                          until, None, counts)),
            ]  # fmt: skip
            await asyncio.sleep(warmup_s)
            baseline = _gauges()
            while not all(t.done() for t in load):
                lags.append(await total_lag(kafka_settings, worker_groups(group)))
                await asyncio.sleep(5)
            await asyncio.gather(*load)
            await lag_settles(kafka_settings, worker_groups(group), timeout_s=180)
            await asyncio.sleep(5)  # idle connections and finished calls let go
            after = _gauges()
    finally:
        await gateway.stop()
    written = {str(e.event_id) for _, e, _ in await read_all(
        kafka_settings, codec, catalogue.name("research.events"))}  # fmt: skip
    ids = accepted.read_text().split()
    lost = [i for i in ids if i not in written]
    print(
        f"\nsoak {minutes:g} min at {rate:g}/s of each: answers {counts}; baseline RSS "
        f"{baseline[0] / 2**20:.0f} MiB, fds {baseline[1]}, tasks {baseline[2]}; after RSS "
        f"{after[0] / 2**20:.0f} MiB, fds {after[1]}, tasks {after[2]}; lag max "
        f"{max(lags, default=0)} (samples {len(lags)}); accepted events {len(ids)}, lost {len(lost)}"
    )
    assert ids, "no event was accepted"
    assert not lost, f"{len(lost)} acknowledged events lost"
    assert after[0] - baseline[0] < RSS_SLACK, "memory did not return to its baseline"
    assert after[1] - baseline[1] <= FD_SLACK, "open file descriptors did not return"
    assert after[2] - baseline[2] <= TASK_SLACK, "asyncio tasks did not return"
    assert max(lags, default=0) < 60 * rate, f"the worker's lag reached {max(lags)}"
