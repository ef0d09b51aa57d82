"""Metrics projection rebuild rate vs a raw aiokafka read of the same topics, in one run.

Mixed events (successes with latency/cost/model, failures by error class, retries, expirations,
health checks; 12 services, 30 minutes of event time) are published to ``calls.results`` and
``integration.health``. Then, best of 2 each:

- raw: ``AIOKafkaConsumer.getmany`` of every source partition from the beginning to the end
  (bytes only, read_committed);
- rebuild: ``streams.projections.rebuild`` of the metrics projection into a fresh SQLite store
  (decode, dedupe by event id, apply, commit state per batch), without swapping it in.

Then, when the module runs alone (``main``), the live side: a :class:`ProjectionRunner` of the
metrics projection while a publisher in the same process writes mixed events to its sources as
fast as it can (``BACKBONE_BENCH_LIVE_SECONDS``, default 15; 0 skips it): records applied per
second against records published, the lag sampled each second, and the catch-up rate once
publishing stops.

Target (issue 11): rebuild >= 0.5 of raw. Records: ``BACKBONE_BENCH_PROJECTION_RECORDS``
(default 1,000,000; a smaller count is printed as such).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.projections import MetricsProjection
from benchmarks._harness import FLOOR_CONSUME, Row, Stat, kafka_bootstrap, scaled
from infra.registry import RegistryServer
from streams.admin import apply_catalogue, partitions
from streams.codec import Codec
from streams.events import Event
from streams.events.calls import CallExpired, CallFailed, CallRetryScheduled, CallSucceeded
from streams.events.health import HealthChecked, HealthStatus
from streams.producer import Publisher
from streams.projections import ProjectionRunner, rebuild
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RECORDS = int(os.environ.get("BACKBONE_BENCH_PROJECTION_RECORDS", str(scaled(1_000_000, 20_000))))
REPEATS = scaled(3, 2)
LIVE_SECONDS = float(os.environ.get("BACKBONE_BENCH_LIVE_SECONDS", "15"))
CHUNK = 5_000


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
        await apply_catalogue(kafka, catalogue)
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            codec = Codec(client)
            seconds = await _publish(kafka, codec, catalogue)
            print(f"published {RECORDS:,} mixed events in {seconds:.1f} s")
            projection = MetricsProjection()
            topics = [catalogue.name(t) for t in projection.sources]
            raw_rates, rebuild_rates = [], []
            for _ in range(REPEATS):
                count, took = await _raw(kafka, topics)
                raw_rates.append(count / took)
                with tempfile.TemporaryDirectory() as tmp:
                    report = await rebuild(
                        kafka, codec, catalogue, projection, Path(tmp), swap=False
                    )
                rebuild_rates.append(report.rate)
            raw_best, rebuild_best = max(raw_rates), max(rebuild_rates)
            print(f"read {count:,} records of {', '.join(projection.sources)} (best of {REPEATS}):")
            print(f"  raw aiokafka getmany (bytes)       : {raw_best:>9,.0f} records/s")
            print(f"  metrics projection rebuild (SQLite): {rebuild_best:>9,.0f} records/s")
            print(f"  ratio rebuild/raw: {rebuild_best / raw_best:.2f}   (target >= 0.50)")
            partitions = sum(catalogue.spec(t).partitions for t in projection.sources)
            return {"raw": raw_rates, "rebuild": rebuild_rates, "records": count,
                    "partitions": partitions}  # fmt: skip
    finally:
        await server.stop()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)


async def _live_with_registry(bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench")
    prefix = f"bench-live-{uuid.uuid4().hex[:6]}."
    server = RegistryServer(kafka, topic=f"{prefix}_schemas", port=0)
    await server.start()
    try:
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            await _live(kafka, Codec(client), Catalogue(prefix=prefix))
    finally:
        await server.stop()


async def _live(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> None:
    await apply_catalogue(kafka, catalogue)
    rng = random.Random(7)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    published = 0
    samples: list[tuple[float, int, int]] = []  # seconds, published, applied
    with tempfile.TemporaryDirectory() as tmp:
        runner = ProjectionRunner(kafka, codec, catalogue, MetricsProjection(), Path(tmp))
        task = asyncio.create_task(runner.run())

        def taken() -> int:
            s = runner.status
            return s.applied + s.duplicates + s.dead_lettered

        try:
            async with Publisher(kafka, codec, catalogue) as publisher:
                await publisher.publish_many([_event(0, rng, t0)])  # topics and schemas warm
                published = 1
                await _until(lambda: taken() >= 1, 300)
                began = time.perf_counter()
                next_sample = 1.0
                i = 1
                while (now := time.perf_counter() - began) < LIVE_SECONDS:
                    chunk = [_event(i + n, rng, t0) for n in range(1_000)]
                    await publisher.publish_many(chunk)
                    i += len(chunk)
                    published += len(chunk)
                    if now >= next_sample:
                        samples.append((now, published, taken()))
                        next_sample += 1.0
                produced_s = time.perf_counter() - began
                at_end = taken()
                await _until(lambda: taken() >= published, 300)
                drained_s = time.perf_counter() - began - produced_s
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    publish_rate = (published - 1) / produced_s
    apply_rate = (at_end - 1) / produced_s
    print(f"live metrics projection, {LIVE_SECONDS:.0f} s of publishing as fast as possible:")
    print(f"  published (acked)   : {publish_rate:>9,.0f} records/s")
    print(
        f"  applied meanwhile   : {apply_rate:>9,.0f} records/s  (ratio {apply_rate / publish_rate:.2f})"
    )
    lags = [p - a for _, p, a in samples]
    print(f"  lag each second     : {', '.join(f'{lag:,}' for lag in lags)}")
    behind = published - at_end
    print(f"  lag at the end {behind:,} records, drained {drained_s:.1f} s later", end="")
    print(f" (catch-up {behind / drained_s:,.0f} records/s)" if drained_s > 0 else "")


def rows() -> list[Row]:
    with kafka_bootstrap() as bootstrap:
        found = asyncio.run(_run(bootstrap))
    params = {"records": found["records"], "partitions": found["partitions"], "repeats": REPEATS,
              "warmup": 0, "concurrency": 1, "store": "SQLite"}  # fmt: skip
    return [
        Row("projection: metrics rebuild", "records/s", Stat.of(found["rebuild"]),
            Stat.of(found["raw"]), "raw aiokafka getmany", params, floor_key=FLOOR_CONSUME,
            target="ratio >= 0.5"),
    ]  # fmt: skip


def main() -> None:
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_run(bootstrap))
        if LIVE_SECONDS > 0:
            asyncio.run(_live_with_registry(bootstrap))


if __name__ == "__main__":
    main()
