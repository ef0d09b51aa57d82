"""SDK produce and consume throughput against their baselines, in one run on a real broker and registry.

1. Publish: ``Publisher.publish_many`` of typed ``CallRequested`` events vs raw ``AIOKafkaProducer``
   sending the *same* records pre-encoded (same bytes, keys, headers, topic, partitions, producer
   settings: acks=all, idempotent, lz4, linger). The SDK pays model -> Avro encoding on top.
   Target: SDK >= 0.7 of raw.
2. Tail: ``Subscriber`` (decode every record to its model) vs raw ``AIOKafkaConsumer.getmany`` of the
   same records (bytes only).

HTTP ingest (``POST /v1/events``, open and closed loop, 1 and 2 gateway processes) is measured by
``bench_ingest`` alone; this module measures the SDK's own produce and consume paths.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks._harness import (
    FLOOR_CONSUME,
    FLOOR_PRODUCE,
    Row,
    Stat,
    create_catalogue_topics,
    kafka_bootstrap,
    progress,
    scaled,
)
from infra.registry import RegistryServer
from streams import headers as h
from streams.admin import partitions
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
REPEATS = scaled(3, 2)


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


# --- 2. tail ------------------------------------------------------------------------------------


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
        await create_catalogue_topics(kafka, catalogue, "calls.requests")
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

            tail = await _tail_bench(kafka, codec, catalogue)
            print(f"tail {tail['records']:,.0f} records from the beginning (best of {REPEATS}):")
            print(f"  raw aiokafka getmany (bytes)    : {tail['raw']:>9,.0f} records/s")
            print(f"  Subscriber (decoded to models)  : {tail['sdk']:>9,.0f} records/s")
            print(f"  ratio Subscriber/raw: {tail['sdk'] / tail['raw']:.2f}")
            partitions = catalogue.spec("calls.requests").partitions
            return {"pub": pub, "tail": tail,
                    "compression": kafka.compression, "partitions": partitions}  # fmt: skip
    finally:
        await server.stop()


def rows() -> list[Row]:
    with kafka_bootstrap() as bootstrap:
        found = asyncio.run(_run(bootstrap))
    pub, tail = found["pub"], found["tail"]
    common = {"partitions": found["partitions"], "repeats": REPEATS, "warmup": 1}
    publish = {**common, "records": RECORDS, "batch": CHUNK, "concurrency": 1,
               "producer": f"acks=all, idempotent, {found['compression']}"}  # fmt: skip
    return [
        Row("sdk: Publisher.publish_many", "records/s", Stat.of(pub["sdk_runs"]),
            Stat.of(pub["raw_runs"]), "raw aiokafka, same bytes", publish,
            floor_key=FLOOR_PRODUCE, target="ratio >= 0.7"),
        Row("sdk: Subscriber tail (decoded)", "records/s", Stat.of(tail["sdk_runs"]),
            Stat.of(tail["raw_runs"]), "raw aiokafka getmany", {**common, "records": tail["records"],
            "concurrency": 1}, floor_key=FLOOR_CONSUME),
    ]  # fmt: skip


def main() -> None:
    with kafka_bootstrap() as bootstrap:
        asyncio.run(_run(bootstrap))


if __name__ == "__main__":
    main()
