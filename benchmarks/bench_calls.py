"""Calls per second end to end vs raw aiokafka and vanilla Faust passthroughs (same records, same run).

- **calls**: ``call.requested`` records pre-loaded in ``calls.requests`` go through the whole call
  worker (router -> lane -> executor with a zero-latency simulated provider -> ``call.succeeded`` in
  ``calls.results``): two Kafka hops, Avro decode/encode on each, limiter, breaker, idempotency.
- **raw aiokafka**: a consumer group reads the same request bytes and produces each to another
  topic (one hop, no decoding), committing as it goes.
- **vanilla Faust**: a Faust agent doing the same passthrough.

Throughput is measured on the output topic's record timestamps over the middle 80 % of the records,
so start-up (group join, Faust boot) is excluded for all three alike. Targets (issue 5): calls >= 0.5
of raw aiokafka, and not slower than vanilla Faust.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.settings import WorkerSettings
from agents.worker import CallWorker
from benchmarks._harness import (
    FLOOR_PRODUCE,
    Row,
    Stat,
    create_catalogue_topics,
    kafka_bootstrap,
    progress,
    scaled,
)
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings
from infra.registry.server import RegistryServer
from streams.admin import create_topics
from streams.codec import Codec
from streams.events.calls import CallRequested
from streams.inspect import describe_group
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue, TopicRole, TopicSpec

N = int(os.environ.get("BENCH_CALLS_N", str(scaled(3000, 1000))))
WORKERS = 2  # worker processes of the multi-process row
#: the consumer groups of a call worker's stages (agents._kafka_calls): ``{group_id}.{stage}``
STAGES = ("router", "lanes", "retry")
#: the topics a call worker reads and writes (the rest of the catalogue is not created)
WORKER_TOPICS = ("calls.", "integration.", "backbone.undecodable", "plugins.lifecycle")


def _box_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _busy_since(before: tuple[int, int]) -> float:
    """The fraction of the machine's CPU time that was busy since ``before``."""
    busy, total = _box_ticks()
    return (busy - before[0]) / max(1, total - before[1])


async def _copy_values(kafka: KafkaSettings, topic: str, n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        while len(values) < n:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return values


async def output_rate(kafka: KafkaSettings, topic: str, n: int, timeout: float = 300) -> float:
    """Records/s on ``topic`` between its first and n-th record's timestamps (waits for n)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    await consumer._client.force_metadata_update()
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(stamps)} of {n} records")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                stamps.extend(r.timestamp for r in records)
    finally:
        await consumer.stop()
    # Steady state: the middle 80 % of the records, so start-up stragglers and the tail of the
    # last batch do not decide the figure (the same cut for all three contenders).
    stamps.sort()
    lo, hi = stamps[n // 10], stamps[n - 1 - n // 10]
    return (n - 2 * (n // 10)) / max(1e-3, (hi - lo) / 1000)


async def _raw_passthrough(kafka: KafkaSettings, src: str, dst: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=kafka.bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()

    async def pump() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    await producer.send(dst, r.value, key=r.key)
            if batches:
                await producer.flush()
                await consumer.commit()

    task = asyncio.create_task(pump())
    try:
        return await output_rate(kafka, dst, n)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await consumer.stop()


async def _faust_passthrough(kafka: KafkaSettings, src: str, dst: str, n: int) -> float:
    app = faust.App(
        f"faust-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{kafka.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        datadir=tempfile.mkdtemp(),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    out = app.topic(dst, value_type=bytes, key_type=bytes)

    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)

    app.agent(app.topic(src, value_type=bytes, key_type=bytes), name="passthrough")(passthrough)
    await app.start()
    try:
        return await output_rate(kafka, dst, n)
    finally:
        await app.stop()


def call_requests(n: int) -> list[CallRequested]:
    """``n`` distinct requests to the simulated service ``sim`` (what the pipeline is fed)."""
    return [
        CallRequested(
            call_id=uuid.uuid4().hex,
            service="sim",
            operation="chat",
            payload='{"messages": [{"role": "user", "content": "hello"}]}',
            idempotency_key=uuid.uuid4().hex,
        )
        for _ in range(n)
    ]


def worker_settings(prefix: str) -> WorkerSettings:
    return WorkerSettings(
        group_id=f"{prefix}calls",
        max_in_flight=512,
        lane_prefetch=int(os.environ.get("BENCH_CALLS_PREFETCH", "128")),
        lane_batch=int(os.environ.get("BENCH_CALLS_BATCH", "32")),
        services=(
            ServiceSettings(
                name="sim",
                kind="simulated",
                rate_limit=RateLimit(rate=1e6, burst=100_000),
                max_concurrency=512,
            ),
        ),
    )


async def _calls(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, n: int) -> float:
    worker = CallWorker(kafka, codec, catalogue, worker_settings(catalogue.prefix))
    await worker.start()
    try:
        before = _box_ticks()
        rate = await output_rate(kafka, catalogue.name("calls.results"), n)
        print(f"  (machine CPU busy during the run: {_busy_since(before):.0%})", flush=True)
        routed = await output_rate(kafka, catalogue.name("calls.lane.normal"), n)
        print(f"  (router hop alone: {routed:.0f} records/s)", flush=True)
        return rate
    finally:
        await worker.stop()


async def _serve_worker(bootstrap: str, registry_url: str, prefix: str) -> None:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-calls", compression="none")
    async with RegistryClient(RegistrySettings(url=registry_url)) as client:
        catalogue = Catalogue(prefix=prefix)
        worker = CallWorker(kafka, Codec(client), catalogue, worker_settings(prefix))
        await worker.start()
        await asyncio.Event().wait()  # until the benchmark terminates this process


def _worker_process(conn: Connection) -> None:
    """Spawned early, it imports while the other contenders are set up, says so, then waits for
    its ``(bootstrap, registry_url, prefix)`` to run a worker until terminated."""
    conn.send("imported")
    asyncio.run(_serve_worker(*conn.recv()))


def spawn_workers(count: int) -> list[tuple[Any, Connection]]:
    """``count`` call-worker processes, spawned now, each started by :func:`start_workers`."""
    spawn = mp.get_context("spawn")
    procs = []
    for _ in range(count):
        parent, child = mp.Pipe()
        proc = spawn.Process(target=_worker_process, args=(child,), daemon=True)
        proc.start()
        procs.append((proc, parent))
    return procs


async def _calls_in_processes(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    n: int,
    procs: list[tuple[Any, Connection]],
) -> float:
    """The same pipeline run by the worker processes ``procs`` (:func:`spawn_workers`) of one
    group (3 of the 6 partitions each with two); measured like :func:`_calls`, on the results'
    timestamps.

    The requests are written only once every stage's group holds all the processes: written
    before, the first process to join took them all and handed half over in a rebalance while
    the window was measured (3,000 calls take about a second; a rebalance takes seconds), so
    the row measured start-up, not two processes at work (0.73 of one in the 2026-12-01 run)."""
    for _, conn in procs:
        conn.send((kafka.bootstrap, registry.url, catalogue.prefix))
    groups = [f"{worker_settings(catalogue.prefix).group_id}.{stage}" for stage in STAGES]
    await _groups_settled(kafka, groups, len(procs))
    async with Publisher(kafka, codec, catalogue) as publisher:
        await publisher.publish_many(call_requests(n), topic="calls.requests")
    before = _box_ticks()
    rate = await output_rate(kafka, catalogue.name("calls.results"), n)
    print(f"  (machine CPU busy during the run: {_busy_since(before):.0%})", flush=True)
    return rate


async def _groups_settled(
    kafka: KafkaSettings, groups: list[str], members: int, timeout_s: float = 120.0
) -> None:
    """Until each of ``groups`` is Stable with ``members`` members."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = [await describe_group(kafka, group) for group in groups]
        if all(s.state == "Stable" and s.members == members for s in states):
            return
        if time.monotonic() > deadline:
            seen = {s.group: (s.state, s.members) for s in states}
            raise TimeoutError(f"groups not settled with {members} members: {seen}")
        await asyncio.sleep(0.2)


async def stop_workers(procs: list[tuple[Any, Connection]]) -> None:
    for proc, _ in procs:
        if proc.is_alive():
            proc.terminate()
    for proc, conn in procs:
        await asyncio.to_thread(proc.join, 30)
        conn.close()


async def _run(kafka: KafkaSettings, registry: RegistrySettings) -> dict[str, float]:
    """Records/s of each contender (printed too); bench_latency reuses it."""
    procs = spawn_workers(WORKERS)  # their imports overlap with the set-up below
    try:
        return await _contenders(kafka, registry, procs)
    finally:
        await stop_workers(procs)


async def _contenders(
    kafka: KafkaSettings, registry: RegistrySettings, procs: list[tuple[Any, Connection]]
) -> dict[str, float]:
    catalogue = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    # Two worker processes need fresh topics (and a fresh ledger); their requests are written
    # once the processes are in their groups (_calls_in_processes).
    second = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    await create_catalogue_topics(kafka, catalogue, *WORKER_TOPICS)
    await create_catalogue_topics(kafka, second, *WORKER_TOPICS)
    async with RegistryClient(registry) as client:
        codec = Codec(client)
        requests = call_requests(N)
        async with Publisher(kafka, codec, catalogue) as publisher:
            await publisher.publish_many(requests, topic="calls.requests")
        values = await _copy_values(kafka, catalogue.name("calls.requests"), N)
        # Baselines read the very same bytes from their own topics (6 partitions like the lanes).
        names = {
            k: f"{catalogue.prefix}bench.{k}"
            for k in ("raw.in", "raw.out", "faust.in", "faust.out")
        }
        await create_topics(
            kafka,
            [
                (name, TopicSpec(name, TopicRole.FACT, "any", (), "bench", 6))
                for name in names.values()
            ],
            serving=True,
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        for value in values:
            await producer.send(names["raw.in"], value, key=b"sim")
            await producer.send(names["faust.in"], value, key=b"sim")
        await producer.stop()

        for _, conn in procs:  # no contender is measured while they import
            await asyncio.to_thread(conn.recv)
        results: dict[str, float] = {}
        runs: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            (
                "raw aiokafka passthrough",
                lambda: _raw_passthrough(kafka, names["raw.in"], names["raw.out"], N),
            ),
            (
                "vanilla Faust passthrough",
                lambda: _faust_passthrough(kafka, names["faust.in"], names["faust.out"], N),
            ),
            ("calls end to end", lambda: _calls(kafka, codec, catalogue, N)),
        ]
        for name, run in runs:
            progress(f"calls: {name}, {N:,} records")
            results[name] = await run()
            print(f"{name:<28} {results[name]:>9.0f} records/s  ({N} records)", flush=True)
        progress(f"calls: {WORKERS} worker processes, {N:,} records")
        name = f"calls, {WORKERS} worker processes"
        results[name] = await _calls_in_processes(kafka, registry, codec, second, N, procs)
        print(f"{name:<28} {results[name]:>9.0f} records/s  ({N} records)", flush=True)
    calls = results["calls end to end"]
    print(
        f"ratio calls / raw aiokafka   {calls / results['raw aiokafka passthrough']:.2f}  (target >= 0.5)"
    )
    print(
        f"ratio calls / vanilla Faust  {calls / results['vanilla Faust passthrough']:.2f}  (target >= 1.0)"
    )
    return results


async def _main(bootstrap: str) -> dict[str, float]:
    # no compression, like the baselines' producers: the same records, the same settings
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-calls", compression="none")
    server = RegistryServer(kafka, topic=f"bench-{uuid.uuid4().hex[:6]}._schemas", port=0)
    await server.start()
    try:
        return await _run(kafka, RegistrySettings(url=server.url))
    finally:
        await server.stop()


def rows() -> list[Row]:
    """One run each (a repeat needs fresh topics and a fresh group; n = 1 is stated)."""
    with kafka_bootstrap() as bootstrap:
        found = asyncio.run(_main(bootstrap))
    params = {"records": N, "partitions": 6, "repeats": 1, "warmup": 0, "max_in_flight": 512,
              "measured": "middle 80 % of output record timestamps"}  # fmt: skip
    calls = Stat.of(found["calls end to end"])
    return [
        Row("calls: end to end (2 hops, simulated provider)", "records/s", calls,
            Stat.of(found["raw aiokafka passthrough"]), "raw aiokafka passthrough", params,
            floor_key=FLOOR_PRODUCE, target="ratio >= 0.5"),
        Row("calls: end to end vs Faust", "records/s", calls,
            Stat.of(found["vanilla Faust passthrough"]), "vanilla Faust passthrough", params,
            floor_key=FLOOR_PRODUCE, target="ratio >= 1.0"),
        Row(f"calls: end to end, {WORKERS} worker processes", "records/s",
            Stat.of(found[f"calls, {WORKERS} worker processes"]), calls,
            "1 worker process (in the bench's own)", {**params, "processes": WORKERS},
            floor_key=FLOOR_PRODUCE, target="grows"),
    ]  # fmt: skip


def main() -> None:
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_main(bootstrap))


if __name__ == "__main__":
    main()
