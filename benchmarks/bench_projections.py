"""Metrics projection rebuild rate vs a raw aiokafka read of the same topics, in one run.

Mixed events (successes with latency/cost/model, failures by error class, retries, expirations,
health checks; 12 services, 30 minutes of event time) are published to ``calls.results`` and
``integration.health``. Then, best of 2 each:

- raw: ``AIOKafkaConsumer.getmany`` of every source partition from the beginning to the end
  (bytes only, read_committed);
- rebuild: ``streams.projections.rebuild`` of the metrics projection into a fresh SQLite store
  (decode, dedupe by event id, apply, commit state per batch), without swapping it in.

Then the live side: a :class:`ProjectionRunner` of the metrics projection while another process
publishes mixed events to its sources as fast as acks come back (``BACKBONE_BENCH_LIVE_SECONDS``,
default 15, quick 4: a verdict needs 10 samples; 0 skips it): the lag (records behind the end,
as ``backbone projections status`` counts it) sampled each second (quick: every 0.25 s), and
whether it is bounded:
the largest lag of the second half of the run is not above the first half's, and it drains once
publishing stops.

The row's parameters also hold the CPU each side spent per record (this process and the rebuild's
part processes, ``resource.getrusage``), which a loaded box inflates less than wall-clock rates.

Target (issue 11): rebuild >= 0.5 of raw. Records: ``BACKBONE_BENCH_PROJECTION_RECORDS``
(default 1,000,000; a smaller count is printed as such). Rebuild processes:
``BACKBONE_BENCH_REBUILD_WORKERS`` (default: the rebuild's choice; the row says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.projections import MetricsProjection
from agents.worker import CallWorker
from benchmarks._harness import (
    FLOOR_CONSUME,
    Row,
    Stat,
    create_catalogue_topics,
    kafka_bootstrap,
    progress,
    quick,
    scaled,
)
from benchmarks.bench_calls import WORKER_TOPICS, call_requests, output_rate, worker_settings
from infra.registry import RegistryServer
from streams.admin import partitions
from streams.codec import Codec
from streams.events import Event
from streams.events.calls import (
    CallExpired,
    CallFailed,
    CallRetryScheduled,
    CallSucceeded,
)
from streams.events.health import HealthChecked, HealthStatus
from streams.producer import Publisher
from streams.projections import (
    CHECKPOINT_KEY,
    ProjectionRunner,
    SqliteStore,
    rebuild,
    store_path,
)
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RECORDS = int(os.environ.get("BACKBONE_BENCH_PROJECTION_RECORDS", str(scaled(1_000_000, 20_000))))
REPEATS = scaled(3, 2)
LIVE_SECONDS = float(os.environ.get("BACKBONE_BENCH_LIVE_SECONDS", str(scaled(15, 4))))
#: seconds between two lag samples (a verdict needs MIN_LAG_SAMPLES of them)
SAMPLE_S = 0.25 if quick() else 1.0
#: processes of the rebuild (default: the rebuild's own, one)
WORKERS = (
    int(os.environ["BACKBONE_BENCH_REBUILD_WORKERS"])
    if os.environ.get("BACKBONE_BENCH_REBUILD_WORKERS")
    else None
)
CHUNK = 5_000
#: the metrics projection's sources, its changelog and the windows it emits
PROJECTION_TOPICS = ("calls.results", "integration.", "projections.metrics.changelog",
                     "monitoring.")  # fmt: skip
#: calls the pipeline works off next to the live projection (0 skips it)
LIVE_CALLS = int(os.environ.get("BACKBONE_BENCH_LIVE_CALLS", str(scaled(30_000, 3_000))))
PIPELINE_CAP_S = 600.0


def _event(i: int, rng: random.Random, t0: datetime) -> Event:
    service = f"service-{i % 12}"
    at = t0 + timedelta(seconds=1800 * i / RECORDS + rng.random())
    common = {"occurred_at": at, "call_id": f"c{i}", "service": service, "idempotency_key": f"k{i}"}
    roll = rng.random()
    if roll < 0.65:
        return CallSucceeded(
            **common,
            operation="chat",
            status=200,
            latency_ms=rng.lognormvariate(4, 0.8),
            attempt=0,
            cost_usd=0.0001 * rng.randint(1, 50),
            tokens_prompt=rng.randint(10, 900),
            tokens_completion=rng.randint(10, 400),
            response=f'{{"model": "m-{i % 3}"}}',
            model=f"m-{i % 3}",  # as the connectors write it since CallSucceeded v3
        )
    if roll < 0.85:
        return CallFailed(
            **common,
            operation="chat",
            error_class=rng.choice(("Timeout", "RateLimited", "ServerError")),
            message="failed",
            retriable=True,
            attempt=0,
            latency_ms=rng.uniform(5, 3000),
        )
    if roll < 0.93:
        return CallRetryScheduled(**common, due_at=at, tier=1, attempt=1)
    if roll < 0.96:
        return CallExpired(**common, operation="chat", deadline=at, attempt=2)
    return HealthChecked(occurred_at=at, service=service, status=rng.choice(list(HealthStatus)))


async def _publish(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> float:
    rng = random.Random(42)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    began = time.perf_counter()
    async with Publisher(kafka, codec, catalogue) as publisher:
        for start in range(0, RECORDS, CHUNK):
            chunk = [_event(i, rng, t0) for i in range(start, min(RECORDS, start + CHUNK))]
            await publisher.publish_many(chunk)
    return time.perf_counter() - began


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that ended (a rebuild's parts)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    parts = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + parts.ru_utime + parts.ru_stime


async def _raw(kafka: KafkaSettings, topics: list[str]) -> tuple[int, float]:
    found = await partitions(kafka, topics)
    tps = [TopicPartition(t, p) for t in topics for p in found[t]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",  # agrees with seek_to_beginning (aiokafka reset race)
        max_poll_records=10_000,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        began = time.perf_counter()
        await consumer.seek_to_beginning(*tps)
        count = 0
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1_000, max_records=10_000)
            count += sum(len(records) for records in batch.values())
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return count, time.perf_counter() - began
    finally:
        await consumer.stop()


async def _run(bootstrap: str) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench")
    catalogue = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    server = RegistryServer(kafka, topic=f"{catalogue.prefix}_schemas", port=0)
    await server.start()
    try:
        await create_catalogue_topics(kafka, catalogue, *PROJECTION_TOPICS)
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            codec = Codec(client)
            seconds = await _publish(kafka, codec, catalogue)
            print(f"published {RECORDS:,} mixed events in {seconds:.1f} s")
            projection = MetricsProjection()
            topics = [catalogue.name(t) for t in projection.sources]
            raw_rates, rebuild_rates = [], []
            raw_cpu, rebuild_cpu = [], []  # us of CPU per record (this process and its parts)
            progress(f"projections: raw read and rebuild of {RECORDS:,} records, x{REPEATS}")
            for _ in range(REPEATS):
                began = _cpu_s()
                count, took = await _raw(kafka, topics)
                raw_rates.append(count / took)
                raw_cpu.append(round(1e6 * (_cpu_s() - began) / count, 1))
                with tempfile.TemporaryDirectory() as tmp:
                    began = _cpu_s()
                    report = await rebuild(
                        kafka, codec, catalogue, projection, Path(tmp), swap=False,
                        workers=WORKERS,
                    )  # fmt: skip
                    rebuild_cpu.append(round(1e6 * (_cpu_s() - began) / report.records, 1))
                rebuild_rates.append(report.rate)
            raw_best, rebuild_best = max(raw_rates), max(rebuild_rates)
            print(f"read {count:,} records of {', '.join(projection.sources)} (best of {REPEATS}):")
            print(f"  raw aiokafka getmany (bytes)       : {raw_best:>9,.0f} records/s"
                  f"  (CPU {', '.join(map(str, raw_cpu))} us a record)")  # fmt: skip
            print(f"  metrics projection rebuild (SQLite): {rebuild_best:>9,.0f} records/s"
                  f"  (CPU {', '.join(map(str, rebuild_cpu))} us a record;"
                  f" {report.workers} process{'es' if report.workers > 1 else ''})")  # fmt: skip
            print(f"  ratio rebuild/raw: {rebuild_best / raw_best:.2f}   (target >= 0.50)")
            partitions = sum(catalogue.spec(t).partitions for t in projection.sources)
            return {"raw": raw_rates, "rebuild": rebuild_rates, "records": count,
                    "partitions": partitions, "workers": report.workers,
                    "raw_cpu_us": raw_cpu, "rebuild_cpu_us": rebuild_cpu}  # fmt: skip
    finally:
        await server.stop()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)


LiveRun = Callable[[KafkaSettings, Codec, Catalogue, str], Awaitable[dict[str, Any]]]


async def _live_with_registry(bootstrap: str, run: LiveRun) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench")
    prefix = f"bench-live-{uuid.uuid4().hex[:6]}."
    server = RegistryServer(kafka, topic=f"{prefix}_schemas", port=0)
    await server.start()
    try:
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            return await run(kafka, Codec(client), Catalogue(prefix=prefix), server.url)
    finally:
        await server.stop()


def _publish_for(
    bootstrap: str, prefix: str, registry_url: str, seconds: float, start: Any, out: Any
) -> None:
    """In a process of its own (as the pipeline's workers are), once ``start`` says so: publish
    mixed events to the projection's sources as fast as acks come back for ``seconds``; sends
    ``None`` once its first chunk is acknowledged (start-up done: the clock starts), then the
    count."""
    start.recv()

    async def go() -> int:
        kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-publisher")
        rng = random.Random(7)
        t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
        async with (
            RegistryClient(RegistrySettings(url=registry_url)) as client,
            Publisher(kafka, Codec(client), Catalogue(prefix=prefix)) as publisher,
        ):
            await publisher.publish_many([_event(n, rng, t0) for n in range(1_000)])
            out.send(None)
            began, i = time.perf_counter(), 1_000
            while time.perf_counter() - began < seconds:
                await publisher.publish_many([_event(i + n, rng, t0) for n in range(1_000)])
                i += 1_000
            return i - 1_000  # published while the clock ran

    out.send(asyncio.run(go()))
    out.close()


def _pipeline_for(
    bootstrap: str, prefix: str, registry_url: str, calls: int, start: Any, out: Any
) -> None:
    """In a process of its own (as a call worker runs), once ``start`` says so: bench_calls' call
    worker working off ``calls`` pre-loaded requests at its maximum rate; sends ``None`` once
    started, then the count of outcomes in ``calls.results`` when all are there."""
    start.recv()

    async def go() -> int:
        kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-calls", compression="none")
        catalogue = Catalogue(prefix=prefix)
        results = catalogue.name("calls.results")
        async with RegistryClient(RegistrySettings(url=registry_url)) as client:
            worker = CallWorker(kafka, Codec(client), catalogue, worker_settings(prefix))
            await worker.start()
            ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            await ends.start()
            try:
                out.send(None)
                tps = [
                    TopicPartition(results, p)
                    for p in (await partitions(kafka, [results]))[results]
                ]
                while True:  # the outcomes are all written
                    if (done := int(sum((await ends.end_offsets(tps)).values()))) >= calls:
                        return done
                    await asyncio.sleep(0.2)
            finally:
                await ends.stop()
                await worker.stop()

    out.send(asyncio.run(go()))
    out.close()


async def _live(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, registry_url: str
) -> dict[str, Any]:
    """Lag of the live metrics projection, sampled every SAMPLE_S, while another process publishes
    to its sources as fast as it can (faster than the calls pipeline can produce outcomes:
    compare bench_calls). Lag = records behind the end, as ``backbone projections status``
    counts it (end offsets minus the store's checkpoints)."""
    args = (kafka.bootstrap, catalogue.prefix, registry_url, LIVE_SECONDS)
    progress(f"projections: live, {LIVE_SECONDS:g} s of publishing as fast as acked")
    found = await _lag_run(kafka, codec, catalogue, _publish_for, args, LIVE_SECONDS + 120)
    rate = found["count"] / found["produced_s"]
    print(f"live metrics projection, {LIVE_SECONDS:.0f} s of publishing as fast as possible:")
    print(f"  published (acked, another process): {rate:>9,.0f} records/s")
    _print_lags(found)
    return {**found, "publish_rate": rate}


async def _live_calls(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, registry_url: str
) -> dict[str, Any]:
    """Lag of the live metrics projection while the calls pipeline of bench_calls (another
    process: router, lane, simulated provider) works off ``LIVE_CALLS`` pre-loaded requests at
    its maximum rate, writing one outcome per call to ``calls.results``, which the projection
    reads. The pipeline's rate is measured as bench_calls does (middle 80 % of the outcomes'
    timestamps)."""
    await create_catalogue_topics(kafka, catalogue, *PROJECTION_TOPICS, *WORKER_TOPICS)
    progress(f"projections: live next to the calls pipeline, {LIVE_CALLS:,} calls")
    async with Publisher(kafka, codec, catalogue) as publisher:
        for begin in range(0, LIVE_CALLS, CHUNK):
            chunk = call_requests(min(CHUNK, LIVE_CALLS - begin))
            await publisher.publish_many(chunk, topic="calls.requests")
    args = (kafka.bootstrap, catalogue.prefix, registry_url, LIVE_CALLS)
    found = await _lag_run(
        kafka, codec, catalogue, _pipeline_for, args, PIPELINE_CAP_S, tolerate_one_second=True
    )
    rate = await output_rate(kafka, catalogue.name("calls.results"), LIVE_CALLS)
    # both over the same window: from the pipeline's start to its last outcome being written
    written_rate = found["count"] / found["produced_s"]
    applied_rate = found["applied"] / found["produced_s"]
    print(f"live metrics projection next to the calls pipeline ({LIVE_CALLS:,} calls):")
    print(f"  calls pipeline (another process): {rate:>9,.0f} outcomes/s (middle 80 %)")
    print(f"  over the run: pipeline wrote {written_rate:>9,.0f} outcomes/s, projection applied "
          f"{applied_rate:,.0f} records/s")  # fmt: skip
    _print_lags(found)
    return {**found, "pipeline_rate": rate, "written_rate": written_rate,
            "applied_rate": applied_rate}  # fmt: skip


def _print_lags(found: dict[str, Any]) -> None:
    lags = found["lags"]
    print(f"  lag every {SAMPLE_S:g} s (records behind the end): "
          f"{', '.join(f'{n:,}' for n in lags)}")  # fmt: skip
    allowed = f" (+{found['tolerance']:,} allowed)" if found["tolerance"] else ""
    print(f"  max lag 1st half {found['first']:,}, 2nd half {found['second']:,}{allowed}: "
          f"{found['verdict']}")  # fmt: skip
    print(f"  max lag {max(lags, default=0):,}; lag at the end {found['at_end']:,} records, "
          f"drained in {found['drained_s']:.1f} s", end="")  # fmt: skip
    print("" if found["left"] == 0 else f" (NOT drained: {found['left']:,} left)")


async def _lag_run(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    target: Callable[..., None],
    args: tuple[Any, ...],
    cap_s: float,
    *,
    tolerate_one_second: bool = False,
) -> dict[str, Any]:
    """Run the live metrics projection here and ``target(*args, start, out)`` in a spawned
    process that waits for a message on ``start``, sends ``None`` on ``out`` once started and a
    count when done (within ``cap_s``); sample the projection's lag every SAMPLE_S while the
    process runs, then until it drains. The process is spawned first: its imports overlap with
    the set-up here, and it starts once the projection runs."""
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    wait, start = spawn.Pipe(duplex=False)
    child = spawn.Process(target=target, args=(*args, wait, send))
    child.start()
    try:
        return await _lag_run_with(kafka, codec, catalogue, child, start, receive, cap_s,
                                   tolerate_one_second=tolerate_one_second)  # fmt: skip
    finally:
        if child.is_alive():
            child.kill()
        await asyncio.to_thread(child.join, 30)


async def _lag_run_with(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    child: Any,
    start: Any,
    receive: Any,
    cap_s: float,
    *,
    tolerate_one_second: bool,
) -> dict[str, Any]:
    await create_catalogue_topics(kafka, catalogue, *PROJECTION_TOPICS)
    projection = MetricsProjection()
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    lags: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp)
        runner = ProjectionRunner(kafka, codec, catalogue, projection, store_dir)
        task = asyncio.create_task(runner.run())

        topics = [catalogue.name(t) for t in projection.sources]
        found = await partitions(kafka, topics)
        tps = [TopicPartition(t, n) for t in topics for n in found[t]]
        ends_reader = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
            isolation_level="read_committed",
        )  # fmt: skip
        await ends_reader.start()
        checkpoints: SqliteStore | None = None

        async def behind() -> int:
            """Records behind the end: the end offsets less the store's checkpoints (what
            ``backbone projections status`` counts, with clients kept open between samples)."""
            nonlocal checkpoints
            path = store_path(store_dir, projection.name)
            if checkpoints is None and path.exists():
                checkpoints = SqliteStore(path)
            done: dict[tuple[str, int], int] = {}
            if checkpoints is not None:
                for task, _, value in checkpoints.items(prefix=CHECKPOINT_KEY):
                    done.update({(topic, task): int(at) for topic, at in value.items()})
            ends = await ends_reader.end_offsets(tps)
            return sum(max(0, ends[tp] - done.get((tp.topic, tp.partition), 0)) for tp in tps)

        try:
            async with Publisher(kafka, codec, catalogue) as publisher:
                # topics and schemas warm: one health check (not a call outcome)
                warm = HealthChecked(occurred_at=t0, service="warm", status=HealthStatus.HEALTHY)
                await publisher.publish_many([warm])
            await _until(lambda: runner.status.applied >= 1, 300)
            applied_before = runner.status.applied
            start.send(True)
            progress("projections: the projection runs; the load process starts")
            while not receive.poll():  # its start-up (clients, group joins) is not measured
                if not child.is_alive():
                    raise RuntimeError("the load process ended before it started")
                await asyncio.sleep(0.2)
            receive.recv()
            began = time.perf_counter()
            while child.is_alive():
                lags.append(await behind())
                await asyncio.sleep(max(0.0, len(lags) * SAMPLE_S - (time.perf_counter() - began)))
                if time.perf_counter() - began > cap_s:
                    raise RuntimeError("the load process did not finish")
            count = receive.recv() if receive.poll(10) else 0
            produced_s = time.perf_counter() - began
            applied = runner.status.applied - applied_before
            at_end = lags[-1] if lags else 0
            progress(f"projections: load done ({len(lags)} lag samples); draining")
            drain_began = time.perf_counter()
            for _ in range(600):  # 5 minutes at most
                if (left := await behind()) == 0:
                    break
                await asyncio.sleep(0.5)
            drained_s = time.perf_counter() - drain_began
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ends_reader.stop()
            if checkpoints is not None:
                checkpoints.close()
    # a sample can fall just before a checkpoint: up to a second of the load's output behind
    # even when the projection keeps up (the full run's sampling interval; the quick run samples
    # more often, which makes this no looser); the pipeline's run allows that
    tolerance = round(count / produced_s) if tolerate_one_second and produced_s > 0 else 0
    first, second, verdict = lag_verdict(lags, drained=left == 0, tolerance=tolerance)
    return {"lags": lags, "tolerance": tolerance, "first": first, "second": second, "bounded": verdict == BOUNDED,
            "verdict": verdict, "count": count, "produced_s": produced_s, "applied": applied,
            "at_end": at_end, "left": left, "drained_s": drained_s}  # fmt: skip


#: fewer lag samples than this say nothing about a trend
MIN_LAG_SAMPLES = 10
BOUNDED = "bounded (not growing)"


def lag_verdict(lags: list[int], *, drained: bool, tolerance: int = 0) -> tuple[int, int, str]:
    """The largest lag of each half of the run and the verdict: bounded when there are enough
    samples, the second half's largest is not above the first half's by more than
    ``tolerance`` records, and the lag drained once publishing stopped; else why not."""
    half = len(lags) // 2
    first, second = max(lags[:half], default=0), max(lags[half:], default=0)
    if len(lags) < MIN_LAG_SAMPLES:
        return first, second, f"NO VERDICT ({len(lags)} samples, fewer than {MIN_LAG_SAMPLES})"
    if second > first + tolerance:
        return first, second, "GROWING (the projection falls behind)"
    if not drained:
        return first, second, "NOT DRAINED (still behind after publishing stopped)"
    return first, second, BOUNDED


def rows() -> list[Row]:
    with kafka_bootstrap() as bootstrap:
        found = asyncio.run(_run(bootstrap))
        live = asyncio.run(_live_with_registry(bootstrap, _live)) if LIVE_SECONDS > 0 else None
        calls = asyncio.run(_live_with_registry(bootstrap, _live_calls)) if LIVE_CALLS else None
    params = {"records": found["records"], "partitions": found["partitions"], "repeats": REPEATS,
              "warmup": 0, "concurrency": 1, "store": "SQLite",
              "workers": found["workers"],
              "cpu_us_per_record": {"rebuild": found["rebuild_cpu_us"], "raw": found["raw_cpu_us"]}}  # fmt: skip
    out = [
        Row("projection: metrics rebuild", "records/s", Stat.of(found["rebuild"]),
            Stat.of(found["raw"]), "raw aiokafka getmany", params, floor_key=FLOOR_CONSUME,
            target="ratio >= 0.5"),
    ]  # fmt: skip
    if live is not None:
        live_params = {"seconds": LIVE_SECONDS, "sample_s": SAMPLE_S, "publisher": "another process, as fast as acked",
                       "publish_rate": round(live["publish_rate"]), "lags": live["lags"],
                       "bounded": live["bounded"], "verdict": live["verdict"],
                       "drained_s": round(live["drained_s"], 1)}  # fmt: skip
        out.append(
            Row("projection: live lag, max of the 2nd half", "records behind",
                Stat.of(live["second"]), Stat.of(live["first"]), "max of the 1st half",
                live_params, target="2nd half <= 1st half (bounded)")
        )  # fmt: skip
    if calls is not None:
        calls_params = {"calls": LIVE_CALLS, "sample_s": SAMPLE_S, "pipeline": "bench_calls' call worker, another process",
                        "pipeline_rate": round(calls["pipeline_rate"]),
                        "written_rate": round(calls["written_rate"]),
                        "applied_rate": round(calls["applied_rate"]), "lags": calls["lags"],
                        "tolerance": calls["tolerance"],
                        "max_lag": max(calls["lags"], default=0), "final_lag": calls["at_end"],
                        "bounded": calls["bounded"], "verdict": calls["verdict"],
                        "drained_s": round(calls["drained_s"], 1)}  # fmt: skip
        out += [
            Row("projection: live lag next to the calls pipeline, max", "records behind",
                Stat.of(max(calls["lags"], default=0)), None, "", calls_params,
                target="bounded, drains to 0"),
            Row("projection: live apply rate vs the calls pipeline", "records/s",
                Stat.of(calls["applied_rate"]), Stat.of(calls["written_rate"]),
                "outcomes/s the pipeline wrote, same window", calls_params,
                target="ratio ~1.0 (keeps up)"),
        ]  # fmt: skip
    return out


def main() -> None:
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_run(bootstrap))
        if LIVE_SECONDS > 0:
            asyncio.run(_live_with_registry(bootstrap, _live))
        if LIVE_CALLS:
            asyncio.run(_live_with_registry(bootstrap, _live_calls))


if __name__ == "__main__":
    main()
