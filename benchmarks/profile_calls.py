"""Where one call worker's CPU goes: N pre-loaded requests drained by an in-process
:class:`~agents.worker.CallWorker` (the pipeline of :mod:`benchmarks.bench_calls`).

    .venv/bin/python -m benchmarks.profile_calls              # CPU per call, no profiler
    .venv/bin/python -m benchmarks.profile_calls --profile    # and a cProfile (tottime, top 45)
    .venv/bin/python -m benchmarks.profile_calls --out calls.prof   # the same, raw profile kept

``BENCH_CALLS_N`` requests (default 6,000) to the simulated service are written first, then the
worker starts and the process's CPU time (``time.process_time``) is taken until the N-th
``calls.results`` record is read back: worker start-up and the reader of the results are
included, alike for every run, so compare runs of this script with each other, not with
``bench_calls``. The broker is ``BACKBONE_KAFKA_BOOTSTRAP`` or one started here.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid

from agents.worker import CallWorker
from benchmarks._harness import create_catalogue_topics, kafka_bootstrap
from benchmarks.bench_calls import WORKER_TOPICS, call_requests, output_rate, worker_settings
from infra.registry.server import RegistryServer
from streams.codec import Codec
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue


async def _main(bootstrap: str, n: int, profile: bool, out: str | None) -> None:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="prof", compression="none")
    server = RegistryServer(kafka, topic=f"prof-{uuid.uuid4().hex[:6]}._schemas", port=0)
    await server.start()
    catalogue = Catalogue(prefix=f"prof-{uuid.uuid4().hex[:6]}.")
    await create_catalogue_topics(kafka, catalogue, *WORKER_TOPICS)
    prof = cProfile.Profile(time.process_time) if profile else None
    try:
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            codec = Codec(client)
            async with Publisher(kafka, codec, catalogue) as publisher:
                await publisher.publish_many(call_requests(n), topic="calls.requests")
            worker = CallWorker(kafka, codec, catalogue, worker_settings(catalogue.prefix))
            began = time.process_time()
            if prof is not None:
                prof.enable()
            await worker.start()
            rate = await output_rate(kafka, catalogue.name("calls.results"), n)
            if prof is not None:
                prof.disable()
            cpu = time.process_time() - began
            await worker.stop()
    finally:
        await server.stop()
    loadavg = os.getloadavg()[0]
    print(
        f"n {n}  rate {rate:.0f}/s  cpu/call {cpu / n * 1e6:.0f} us"
        f"{' (profiled)' if prof else ''}  load {loadavg:.2f}"
    )
    if prof is not None:
        if out:
            prof.dump_stats(out)
        pstats.Stats(prof).sort_stats("tottime").print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="run under cProfile")
    parser.add_argument("--out", help="keep the raw profile here (python -m pstats FILE)")
    args = parser.parse_args()
    n = int(os.environ.get("BENCH_CALLS_N", "6000"))
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_main(bootstrap, n, args.profile or bool(args.out), args.out))


if __name__ == "__main__":
    main()
