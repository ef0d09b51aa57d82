"""What an idle or lightly loaded ``backbone worker`` costs: its CPU time per second of wall time
at 0, 1 and 100 calls/s.

    .venv/bin/python -m benchmarks._profile

One broker (``BACKBONE_KAFKA_BOOTSTRAP``, or one started for the run), one registry, the local
provider (:mod:`benchmarks._provider`) and ``backbone worker`` in its own process, driven by this
process through the SDK's request-reply (no gateway: only the worker is measured). For each rate
(``BENCH_PROFILE_RATES``, default ``0,1,100``) the worker's user + system CPU time is read from
``/proc/<pid>/stat`` before and after ``BENCH_PROFILE_SECONDS`` (default 20) of calls sent open loop
(rate 0: nothing sent); printed as ms of CPU per second and, under load, per call. The rates are
gone through ``BENCH_PROFILE_ROUNDS`` times (default 2) to show the spread. The load average is
printed next to every figure: on a shared box the figures move with it.

To compare two versions of the code on the same box, run this module from each checkout in turn
(``cd <checkout> && PYTHONPATH=. <venv>/bin/python -m benchmarks._profile``), alternating.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks._harness import progress
from benchmarks._servers import gateway_env
from benchmarks.bench_latency import (
    _config,
    _cpu_s,
    _healthy,
    _open_loop,
    _spawn,
    _stop,
    _through_sdk,
    _until_served,
)
from connectors.calls_api import ReplyWaiter
from infra.kafka.broker import LocalBroker, free_port
from infra.registry.server import RegistryServer
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

SECONDS = float(os.environ.get("BENCH_PROFILE_SECONDS", "20"))
RATES = tuple(int(r) for r in os.environ.get("BENCH_PROFILE_RATES", "0,1,100").split(","))
ROUNDS = int(os.environ.get("BENCH_PROFILE_ROUNDS", "2"))


async def _idle(seconds: float, pid: int) -> float:
    """Worker CPU seconds over ``seconds`` with nothing sent."""
    before = _cpu_s(pid)
    await asyncio.sleep(seconds)
    return _cpu_s(pid) - before


def _line(rate: int, cpu_s: float, wall_s: float, calls: int, failed: int) -> str:
    load = os.getloadavg()[0]
    line = f"  {rate:>4} calls/s: worker {cpu_s / wall_s * 1000:6.1f} ms CPU/s"
    if calls:
        line += f", {cpu_s / max(1, calls - failed) * 1000:5.2f} ms/call ({calls} calls"
        line += f", {failed} failed)"
    return line + f" over {wall_s:.1f} s (load {load:.1f})"


async def _profile(kafka: KafkaSettings, registry: RegistrySettings) -> None:
    catalogue = Catalogue(prefix=f"bench-prof-{uuid.uuid4().hex[:6]}.")
    await apply_catalogue(kafka, catalogue, serving=True)
    port = free_port()
    provider = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    procs: list[asyncio.subprocess.Process] = []
    try:
        config = tmp / "backbone.toml"
        config.write_text(_config(provider))
        env = gateway_env(
            kafka.bootstrap,
            free_port(),
            catalogue.prefix,
            BACKBONE_CONFIG=str(config),
            BACKBONE_SCHEMA_REGISTRY_URL=registry.url,
        )
        provider_proc = await _spawn(["benchmarks._provider", str(port)], env, tmp / "p.log")
        procs.append(provider_proc)
        worker = await _spawn(["infra.cli", "worker"], env, tmp / "worker.log")
        procs.append(worker)
        await _healthy(provider_proc, f"{provider}/healthz", tmp / "p.log")
        async with (
            RegistryClient(registry) as client,
            Publisher(kafka, Codec(client), catalogue) as publisher,
        ):
            waiter = ReplyWaiter(kafka, Codec(client), catalogue.name("calls.results"))
            await waiter.start()
            try:
                call = _through_sdk(publisher, waiter)
                progress("profile: until a call goes through the worker, then warm-up calls")
                await _until_served(call)
                await asyncio.sleep(5)  # the warm-up's commits and checkpoints settle
                print(f"backbone worker CPU, {SECONDS:g} s per rate, SDK request-reply:")
                assert worker.pid is not None
                for _ in range(ROUNDS):
                    for rate in RATES:
                        if rate == 0:
                            cpu_s = await _idle(SECONDS, worker.pid)
                            print(_line(0, cpu_s, SECONDS, 0, 0), flush=True)
                            continue
                        n = max(1, int(rate * SECONDS))

                        def cpu() -> tuple[float, float]:
                            return _cpu_s(worker.pid), 0.0

                        run = await _open_loop(call, rate, n, cpu)
                        line = _line(rate, run.cpu_worker_s, run.elapsed_s, n, run.failures)
                        print(line, flush=True)
            finally:
                await waiter.stop()
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


async def _main() -> None:
    broker: LocalBroker | None = None
    bootstrap = os.environ.get("BACKBONE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalBroker()
        await asyncio.to_thread(broker.start, 300.0)
        bootstrap = broker.bootstrap
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-profile")
    server = RegistryServer(kafka, topic=f"bench-prof-{uuid.uuid4().hex[:6]}._schemas", port=0)
    began = time.monotonic()
    await server.start()
    try:
        await _profile(kafka, RegistrySettings(url=server.url))
    finally:
        await server.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    progress(f"profile: done in {time.monotonic() - began:.0f} s")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
