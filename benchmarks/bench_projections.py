"""Metrics projection rebuild rate vs a raw aiokafka read of the same topics, in one run.

Mixed events (successes with latency/cost/model, failures by error class, retries, expirations,
health checks; 12 services, 30 minutes of event time) are published to ``calls.results`` and
``integration.health``. Then, best of 2 each:

- raw: ``AIOKafkaConsumer.getmany`` of every source partition from the beginning to the end
  (bytes only, read_committed);
- rebuild: ``streams.projections.rebuild`` of the metrics projection into a fresh SQLite store
  (decode, dedupe by event id, apply, commit state per batch), without swapping it in.

Target (issue 11): rebuild >= 0.5 of raw. Records: ``BACKBONE_BENCH_PROJECTION_RECORDS``
(default 1,000,000; a smaller count is printed as such).
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
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
from streams.projections import rebuild
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RECORDS = int(os.environ.get("BACKBONE_BENCH_PROJECTION_RECORDS", str(scaled(1_000_000, 20_000))))
REPEATS = scaled(3, 2)
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


if __name__ == "__main__":
    main()
