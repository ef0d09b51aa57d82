"""SDK and gateway throughput against their baselines, in one run on a real broker and registry.

1. Publish: ``Publisher.publish_many`` of typed ``CallRequested`` events vs raw ``AIOKafkaProducer``
   sending the *same* records pre-encoded (same bytes, keys, headers, topic, partitions, producer
   settings: acks=all, idempotent, lz4, linger). The SDK pays model -> Avro encoding on top.
   Target: SDK >= 0.7 of raw.
2. HTTP ingest: ``backbone gateway`` in its own process; this process sends ``POST
   /v1/events/call.requested`` open-loop at a fixed rate (500 req/s) with bounded concurrency and
   reports achieved req/s and p50/p99 latency (each 202 is a broker-acknowledged write). Also the
   closed-loop maximum at fixed concurrency. Target: p99 < 20 ms at 500 req/s.
3. Tail: ``Subscriber`` (decode every record to its model) vs raw ``AIOKafkaConsumer.getmany`` of the
   same records (bytes only).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks._harness import (
    FLOOR_CONSUME,
    FLOOR_PRODUCE,
    Row,
    Stat,
    kafka_bootstrap,
    progress,
    scaled,
)
from benchmarks._servers import TOKEN, gateway_env, serve_process
from infra.kafka.broker import free_port
from infra.registry import RegistryServer
from streams import headers as h
from streams.admin import apply_catalogue, partitions
from streams.codec import Codec
from streams.consumer import Subscriber
from streams.events import Event
from streams.events.calls import CallRequested
from streams.producer import Publisher, schema_id_of
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RECORDS = scaled(20_000, 5_000)
CHUNK = 1_000  # events per publish_many call (and per raw send-then-await round)
REPEATS = 3
HTTP_RATE = 500  # req/s, open loop
HTTP_SECONDS = scaled(8, 3)
HTTP_CONCURRENCY = 64  # in flight at most during the open-loop run
MAX_CONCURRENCY = 32  # closed loop
CLOSED_SECONDS = scaled(5, 2)  # closed loop


def _events(n: int, tag: str) -> list[Event]:
    return [
        CallRequested(
            call_id=f"{tag}-{i:08d}",
            service=f"service-{i % 12}",
            operation="chat.completions",
            payload='{"model": "gpt-x", "messages": [{"role": "user", "content": "hello"}]}',
            idempotency_key=f"{tag}-idem-{i}",
            correlation_id=f"research-{i // 10}",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        for i in range(n)
    ]


async def _timed(run: Callable[[], Awaitable[Any]]) -> float:
    began = time.perf_counter()
    await run()
    return time.perf_counter() - began


# --- 1. publish ---------------------------------------------------------------------------------


async def _publish_bench(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> dict[str, Any]:
    topic = catalogue.name("calls.requests")
    raw = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True,
        linger_ms=kafka.linger_ms, compression_type=kafka.compression,
    )  # fmt: skip
    await raw.start()
    best = {"sdk": float("inf"), "raw": float("inf")}
    runs: dict[str, list[float]] = {"sdk": [], "raw": []}
    try:
        async with Publisher(kafka, codec, catalogue) as publisher:
            await publisher.publish_many(_events(100, "warm"))  # registers the schema
            for repeat in range(REPEATS):  # interleaved so machine load hits both alike
                events = _events(RECORDS, f"sdk{repeat}")
                encoded = [
                    (e.key(), await codec.encode(e, topic), e.traceparent or "")
                    for e in _events(RECORDS, f"raw{repeat}")
                ]

                async def sdk(events: list[Event] = events) -> None:
                    for start in range(0, len(events), CHUNK):
                        await publisher.publish_many(events[start : start + CHUNK])

                async def baseline(encoded: list[tuple[bytes, bytes, str]] = encoded) -> None:
                    for start in range(0, len(encoded), CHUNK):
                        futures = [
                            await raw.send(topic, value, key=key, headers=[
                                (h.EVENT_TYPE, b"call.requested"),
                                (h.SCHEMA_ID, str(schema_id_of(value)).encode()),
                                (h.TRACEPARENT, trace.encode()),
                            ])
                            for key, value, trace in encoded[start : start + CHUNK]
                        ]  # fmt: skip
                        await asyncio.gather(*futures)

                runs["raw"].append(await _timed(baseline))
                runs["sdk"].append(await _timed(sdk))
                best = {name: min(times) for name, times in runs.items()}
    finally:
        await raw.stop()
    return {
        **{name: RECORDS / seconds for name, seconds in best.items()},
        **{f"{name}_runs": [RECORDS / t for t in times] for name, times in runs.items()},
    }


# --- 2. HTTP ingest -----------------------------------------------------------------------------


async def _null_http() -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    return await serve_process(["benchmarks._null_http", str(port)], port, dict(os.environ))


async def _gateway(
    kafka: KafkaSettings, registry: RegistrySettings, prefix: str
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = gateway_env(kafka.bootstrap, port, prefix, BACKBONE_SCHEMA_REGISTRY_URL=registry.url)
    return await serve_process(["infra.cli", "gateway"], port, env)


def _body(i: int) -> dict[str, Any]:
    return {
        "call_id": f"http-{i:08d}",
        "service": f"service-{i % 12}",
        "operation": "chat.completions",
        "payload": '{"model": "gpt-x"}',
        "idempotency_key": f"http-idem-{i}",
    }


async def _post(session: aiohttp.ClientSession, url: str, i: int, latencies: list[float]) -> bool:
    began = time.perf_counter()
    async with session.post(
        f"{url}/v1/events/call.requested", json=_body(i),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:  # fmt: skip
        await response.read()
        ok = response.status == 202
    latencies.append(time.perf_counter() - began)
    return ok


async def _open_loop(url: str) -> dict[str, float]:
    latencies: list[float] = []
    slots = asyncio.Semaphore(HTTP_CONCURRENCY)
    total = HTTP_RATE * HTTP_SECONDS
    failures = 0
    connector = aiohttp.TCPConnector(limit=HTTP_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(200):  # warm connections and caches
            await _post(session, url, i, [])

        async def one(i: int) -> None:
            nonlocal failures
            async with slots:
                if not await _post(session, url, 10_000 + i, latencies):
                    failures += 1

        began = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = began + i / HTTP_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "rate": total / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "p95": ordered[int(len(ordered) * 0.95) - 1] * 1000,
        "max": ordered[-1] * 1000,
        "failures": failures,
    }


async def _closed_loop(url: str, seconds: float = CLOSED_SECONDS) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONCURRENCY)
    ) as session:

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < deadline:
                if await _post(session, url, 1_000_000 * (w + 1) + i, []):
                    done += 1
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(MAX_CONCURRENCY)))
        return done / (time.perf_counter() - began)


# --- 3. tail ------------------------------------------------------------------------------------


async def _tail_bench(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> dict[str, Any]:
    topic = catalogue.name("calls.requests")

    async def sdk() -> int:
        async with Subscriber(
            kafka, codec, catalogue, ["calls.requests"], None, stop_at_end=True
        ) as sub:
            return sum([1 async for _ in sub])

    async def raw() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                                    isolation_level="read_committed",
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in (await partitions(kafka, [topic]))[topic]]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            count = 0
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for records in (
                    await consumer.getmany(timeout_ms=500, max_records=10_000)
                ).values():
                    count += len(records)
            return count
        finally:
            await consumer.stop()

    best = {"sdk": float("inf"), "raw": float("inf")}
    counts = {}
    runs: dict[str, list[float]] = {"sdk": [], "raw": []}
    for _ in range(REPEATS):
        for name, run in (("raw", raw), ("sdk", sdk)):
            began = time.perf_counter()
            counts[name] = await run()
            took = time.perf_counter() - began
            best[name] = min(best[name], took)
            runs[name].append(counts[name] / took)
    assert counts["sdk"] == counts["raw"], counts
    return {
        "records": counts["sdk"],
        **{n: counts[n] / s for n, s in best.items()},
        **{f"{n}_runs": rates for n, rates in runs.items()},
    }


# --- run ----------------------------------------------------------------------------------------


async def _run(bootstrap: str) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench")
    catalogue = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    server = RegistryServer(kafka, topic=f"{catalogue.prefix}_schemas", port=0)
    await server.start()
    try:
        await apply_catalogue(kafka, catalogue, serving=True)
        registry = RegistrySettings(url=server.url)
        async with RegistryClient(registry) as client:
            codec = Codec(client)
            progress(f"sdk: publish {RECORDS:,} x{REPEATS}")
            pub = await _publish_bench(kafka, codec, catalogue)
            print(f"publish {RECORDS} CallRequested x{REPEATS} (acks=all, idempotent, "
                  f"{kafka.compression}, linger {kafka.linger_ms} ms, batches of {CHUNK}), best run:")  # fmt: skip
            print(f"  raw aiokafka, pre-encoded bytes : {pub['raw']:>9,.0f} records/s")
            print(f"  Publisher.publish_many (typed)  : {pub['sdk']:>9,.0f} records/s")
            print(f"  ratio SDK/raw: {pub['sdk'] / pub['raw']:.2f}   (target >= 0.70)")

            http, peak = {}, {}
            for name, start in (
                ("null", _null_http),
                ("gateway", lambda: _gateway(kafka, registry, catalogue.prefix)),
            ):
                progress(
                    f"sdk: HTTP ingest, {name}, {HTTP_SECONDS} s open loop + {CLOSED_SECONDS} s closed loop"
                )
                proc, url = await start()
                try:
                    http[name] = await _open_loop(url)
                    peak[name] = await _closed_loop(url)
                finally:
                    proc.kill()
                    await proc.wait()
            print(f"HTTP ingest, gateway in its own process, open loop at {HTTP_RATE} req/s for "
                  f"{HTTP_SECONDS} s (<= {HTTP_CONCURRENCY} in flight):")  # fmt: skip
            for name, label in (
                ("null", "baseline: aiohttp 202, no Kafka"),
                ("gateway", "gateway (validate, encode, ack)"),
            ):
                r = http[name]
                print(f"  {label:<32}: {r['rate']:,.0f} req/s, p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f}, p99 {r['p99']:.1f}, max {r['max']:.0f} ms, "
                      f"non-202 {r['failures']:.0f}; closed loop x{MAX_CONCURRENCY}: {peak[name]:,.0f} req/s")  # fmt: skip
            print(f"  gateway p99 / 20 ms target: {http['gateway']['p99'] / 20:.2f} (target <= 1.00); "
                  f"gateway/baseline closed-loop ratio: {peak['gateway'] / peak['null']:.2f}")  # fmt: skip

            tail = await _tail_bench(kafka, codec, catalogue)
            print(f"tail {tail['records']:,.0f} records from the beginning (best of 2):")
            print(f"  raw aiokafka getmany (bytes)    : {tail['raw']:>9,.0f} records/s")
            print(f"  Subscriber (decoded to models)  : {tail['sdk']:>9,.0f} records/s")
            print(f"  ratio Subscriber/raw: {tail['sdk'] / tail['raw']:.2f}")
            partitions = catalogue.spec("calls.requests").partitions
            return {"pub": pub, "http": http, "peak": peak, "tail": tail,
                    "compression": kafka.compression, "partitions": partitions}  # fmt: skip
    finally:
        await server.stop()


def rows() -> list[Row]:
    with kafka_bootstrap() as bootstrap:
        found = asyncio.run(_run(bootstrap))
    pub, http, peak, tail = found["pub"], found["http"], found["peak"], found["tail"]
    common = {"partitions": found["partitions"], "repeats": REPEATS, "warmup": 1}
    publish = {**common, "records": RECORDS, "batch": CHUNK, "concurrency": 1,
               "producer": f"acks=all, idempotent, {found['compression']}"}  # fmt: skip
    opened = {"rate_per_s": HTTP_RATE, "seconds": HTTP_SECONDS, "concurrency": HTTP_CONCURRENCY,
              "repeats": 1, "warmup": 200, "partitions": found["partitions"]}  # fmt: skip
    closed = {"seconds": CLOSED_SECONDS, "concurrency": MAX_CONCURRENCY, "repeats": 1, "warmup": 0}
    return [
        Row("sdk: Publisher.publish_many", "records/s", Stat.of(pub["sdk_runs"]),
            Stat.of(pub["raw_runs"]), "raw aiokafka, same bytes", publish,
            floor_key=FLOOR_PRODUCE, target="ratio >= 0.7"),
        Row(f"gateway: POST /v1/events p99 at {HTTP_RATE}/s", "ms",
            Stat.of(http["gateway"]["p99"]), Stat.of(http["null"]["p99"]),
            "aiohttp 202, no Kafka", opened, target="p99 < 20 ms"),
        Row(f"gateway: POST /v1/events p50 at {HTTP_RATE}/s", "ms",
            Stat.of(http["gateway"]["p50"]), Stat.of(http["null"]["p50"]),
            "aiohttp 202, no Kafka", opened),
        Row("gateway: POST /v1/events max (closed loop)", "req/s", Stat.of(peak["gateway"]),
            Stat.of(peak["null"]), "aiohttp 202, no Kafka", closed),
        Row("sdk: Subscriber tail (decoded)", "records/s", Stat.of(tail["sdk_runs"]),
            Stat.of(tail["raw_runs"]), "raw aiokafka getmany", {**common, "records": tail["records"],
            "concurrency": 1}, floor_key=FLOOR_CONSUME),
    ]  # fmt: skip


def main() -> None:
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_run(bootstrap))


if __name__ == "__main__":
    main()
