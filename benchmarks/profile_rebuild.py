"""CPU per record of a metrics projection rebuild against a raw read, on events published once.

    .venv/bin/python -m benchmarks.profile_rebuild publish        # prints the topic prefix last
    .venv/bin/python -m benchmarks.profile_rebuild run PREFIX [--profile FILE]

Both use the broker at ``BACKBONE_KAFKA_BOOTSTRAP``. ``publish`` writes
``BACKBONE_BENCH_PROJECTION_RECORDS`` mixed events (:mod:`benchmarks.bench_projections`' mix) under
a fresh topic prefix, its schemas in a registry topic of that prefix. ``run`` (in a fresh
process each time, so that two versions of the code can be alternated on the same events) reads
them raw (``getmany``, bytes, as the benchmark does) and rebuilds the metrics projection
(``swap=False``), and prints each side's CPU per record (``resource.getrusage``) with the load
average; ``--profile`` runs the rebuild under cProfile and writes the stats to FILE.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agents.projections import MetricsProjection
from benchmarks._harness import create_catalogue_topics
from benchmarks.bench_projections import PROJECTION_TOPICS, RECORDS, _cpu_s, _publish, _raw
from infra.registry import RegistryServer
from streams.codec import Codec
from streams.projections import rebuild
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue


def _kafka() -> KafkaSettings:
    return KafkaSettings(bootstrap=os.environ["BACKBONE_KAFKA_BOOTSTRAP"], client_id="bench")


async def _publish_once() -> None:
    kafka = _kafka()
    catalogue = Catalogue(prefix=f"bench-rb-{uuid.uuid4().hex[:6]}.")
    server = RegistryServer(kafka, topic=f"{catalogue.prefix}_schemas", port=0)
    await server.start()
    try:
        await create_catalogue_topics(kafka, catalogue, *PROJECTION_TOPICS)
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            seconds = await _publish(kafka, Codec(client), catalogue)
    finally:
        await server.stop()
    print(f"published {RECORDS:,} events in {seconds:.1f} s; topic prefix (for run):")
    print(catalogue.prefix)


async def _run(prefix: str, profile: str | None) -> None:
    kafka = _kafka()
    catalogue = Catalogue(prefix=prefix)
    server = RegistryServer(kafka, topic=f"{prefix}_schemas", port=0)
    await server.start()
    try:
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            projection = MetricsProjection()
            topics = [catalogue.name(t) for t in projection.sources]
            began = _cpu_s()
            count, took = await _raw(kafka, topics)
            raw_us = 1e6 * (_cpu_s() - began) / count
            with tempfile.TemporaryDirectory() as tmp:
                profiler = cProfile.Profile() if profile else None
                began, wall = _cpu_s(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                report = await rebuild(
                    kafka, Codec(client), catalogue, projection, Path(tmp), swap=False
                )
                if profiler is not None and profile is not None:
                    profiler.disable()
                    profiler.dump_stats(profile)
                rebuild_us = 1e6 * (_cpu_s() - began) / report.records
                rebuild_s = time.perf_counter() - wall
    finally:
        await server.stop()
    load = os.getloadavg()[0]
    print(
        f"raw {count:,} records {raw_us:.2f} us/record ({count / took:,.0f}/s); "
        f"rebuild {report.records:,} records {rebuild_us:.2f} us/record "
        f"({report.records / rebuild_s:,.0f}/s), keys {report.keys:,}; load {load:.2f}"
    )


def main() -> None:
    if sys.argv[1:2] == ["publish"]:
        asyncio.run(_publish_once())
    elif sys.argv[1:2] == ["run"] and len(sys.argv) >= 3:
        profile = sys.argv[4] if sys.argv[3:4] == ["--profile"] else None
        asyncio.run(_run(sys.argv[2], profile))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
