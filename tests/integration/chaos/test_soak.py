"""Soak (issue 16 section 3 item 7, ``make soak``): the gateway and a call worker, in this
process, under steady load on ``/v1/events`` and ``/v1/calls`` for ``BACKBONE_SOAK_MINUTES``
(default 30) at ``BACKBONE_SOAK_RATE`` requests per second of each kind (default 20). The calls
go to a simulated service (5 ms) whose rate limit is 10 times the offered rate, so the worker runs
well below what it may send (at the default limit of 10/s, 20 calls/s are a backlog growing at
10 records a second: the token bucket doing its job, not a stall).

Oracle: after a warm-up, the process's resident memory, open file descriptors and asyncio task
count are sampled as the baseline; once the load stops the worker's lag returns to 0 (within
180 s) and they are within :data:`RSS_SLACK`, :data:`FD_SLACK` and :data:`TASK_SLACK` of it; the
worker's lag sampled every 5 s stays under 60 s of load; every 2xx answer's event is in
``research.events`` (the accepted ids go to a file, so the oracle's own memory does not grow).

Each lag sample (per stage and partition, with the load average and this process's CPU share)
is a line of ``BACKBONE_SOAK_TRACE`` (default ``lag.tsv`` in the test's tmp dir), the worker's
log (INFO) is next to it as ``.log``; the summary names the lag's peak (when, which stage and
partitions) and each stage's commit rate against the rate its topics were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
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
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import running_worker
from tests.integration.chaos._kit import (
    AUTH,
    TOKEN,
    LagTrace,
    lag_settles,
    open_fds,
    rss_bytes,
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
    # The service's own limit must not be what the soak measures: at its default (10/s) the
    # token bucket holds 20 calls/s back to 10/s and the lag grows 10 records a second, by design.
    limit = RateLimit(rate=10 * rate, burst=int(10 * rate))
    service = ServiceSettings(
        name="sim", kind="simulated", rate_limit=limit, options={"latency_s": "0.005"}
    )
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
    trace = LagTrace(kafka_settings, worker_groups(group), Path(os.environ.get(
        "BACKBONE_SOAK_TRACE", tmp_path / "lag.tsv")))  # fmt: skip
    stalls: list[tuple[float, float]] = []
    handler = logging.FileHandler(trace.path.with_suffix(".log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.INFO)
    watched = {n: logging.getLogger(n) for n in ("agents", "streams", "connectors", "aiokafka")}
    levels = {n: logger.level for n, logger in watched.items()}
    for logger in watched.values():
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    print(f"\nsoak trace: {trace.path}, log {trace.path.with_suffix('.log')}")

    async def loop_stalls() -> None:
        began = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            late = time.monotonic() - before - 0.1
            if late > 0.5:
                stalls.append((before - began, late))
                logging.getLogger("agents").warning("event loop stalled %.2f s", late)

    monitor = asyncio.create_task(loop_stalls())
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
                await trace.sample()
                await asyncio.sleep(5)
            await asyncio.gather(*load)
            left = await lag_settles(kafka_settings, worker_groups(group), timeout_s=180)
            await asyncio.sleep(5)  # idle connections and finished calls let go
            after = _gauges()
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        await gateway.stop()
        for name, logger in watched.items():
            logger.removeHandler(handler)
            logger.setLevel(levels[name])
        handler.close()
    written = {str(e.event_id) for _, e, _ in await read_all(
        kafka_settings, codec, catalogue.name("research.events"))}  # fmt: skip
    ids = accepted.read_text().split()
    lost = [i for i in ids if i not in written]
    print(
        f"\nsoak {minutes:g} min at {rate:g}/s of each: answers {counts}; baseline RSS "
        f"{baseline[0] / 2**20:.0f} MiB, fds {baseline[1]}, tasks {baseline[2]}; after RSS "
        f"{after[0] / 2**20:.0f} MiB, fds {after[1]}, tasks {after[2]}; {trace.report()}; "
        f"lag after the load {left}; event-loop stalls over 0.5 s {len(stalls)} (longest "
        f"{max((s for _, s in stalls), default=0):.1f} s); accepted events {len(ids)}, lost "
        f"{len(lost)}"
    )
    assert ids, "no event was accepted"
    assert not lost, f"{len(lost)} acknowledged events lost"
    assert after[0] - baseline[0] < RSS_SLACK, "memory did not return to its baseline"
    assert after[1] - baseline[1] <= FD_SLACK, "open file descriptors did not return"
    assert after[2] - baseline[2] <= TASK_SLACK, "asyncio tasks did not return"
    assert left == 0, f"the worker's lag did not return to 0 ({left}): {trace.report()}"
    assert trace.peak.lag < 60 * rate, f"the worker's lag reached {trace.report()}"
