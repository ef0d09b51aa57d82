"""Codec encode+decode throughput against raw fastavro on the same records, in the same run.

Baseline: ``fastavro.schemaless_writer`` + ``schemaless_reader`` on the Avro datums of the events
(dicts, the parsed schema at hand): the floor any Avro codec pays. Backbone's codec adds the wire
header, the schema-id lookup, and model <-> datum mapping. Target: ratio >= 0.8.

A real broker and Backbone's registry are started for the run (schema ids come from the registry;
after the first record of each type the hot path no longer touches it).
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro

from benchmarks._harness import Row, Stat, kafka_bootstrap, scaled
from infra.registry import RegistryServer
from streams.codec import Codec
from streams.events import Event
from streams.events._avro import to_avro_builder
from streams.events.calls import CallRequested, CallSucceeded, Priority
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings

RECORDS = scaled(20_000, 4_000)
REPEATS = scaled(7, 3)
TOPIC = "bench.codec"


def _events() -> list[Event]:
    now = datetime.now(UTC)
    events: list[Event] = []
    for n in range(RECORDS // 2):
        call_id = f"call-{n:08d}"
        events.append(
            CallRequested(
                call_id=call_id,
                service="openai",
                operation="chat.completions",
                payload='{"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}',
                priority=Priority.HIGH if n % 3 else Priority.NORMAL,
                deadline=now + timedelta(seconds=30),
                idempotency_key=f"idem-{n}",
                correlation_id=f"research-{n // 10}",
                traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
        )
        events.append(
            CallSucceeded(
                call_id=call_id,
                service="openai",
                operation="chat.completions",
                status=200,
                latency_ms=123.4 + n % 100,
                tokens_prompt=120,
                tokens_completion=340,
                cost_usd=0.0042,
                attempt=0,
                idempotency_key=f"idem-{n}",
                correlation_id=f"research-{n // 10}",
            )
        )
    return events


def _raw_fastavro(events: list[Event]) -> Callable[[], None]:
    parsed = {cls: fastavro.parse_schema(cls.avro_schema()) for cls in {type(e) for e in events}}
    # The same records as plain datums, built outside the timed loop (raw fastavro's best case).
    records = [(parsed[type(e)], dict(to_avro_builder(type(e))(e))) for e in events]

    def run() -> None:
        for schema, datum in records:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, schema, datum)
            fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), schema, None)

    return run


def _codec_sync(codec: Codec, events: list[Event]) -> Callable[[], None]:
    def run() -> None:
        for event in events:
            data = codec.encode_cached(event, TOPIC)
            assert data is not None
            codec.decode_cached(data)

    return run


async def _measure(registry: RegistrySettings) -> dict[str, list[float]]:
    events = _events()
    async with RegistryClient(registry) as client:
        codec = Codec(client)
        for event in events[:2]:  # registers both schemas, primes every cache
            assert await codec.decode(await codec.encode(event, TOPIC)) == event

        async def codec_async() -> None:
            for event in events:
                await codec.decode(await codec.encode(event, TOPIC))

        raw, sync = _raw_fastavro(events), _codec_sync(codec, events)
        raw()  # warm-up, each variant once
        sync()
        await codec_async()
        times: dict[str, list[float]] = {"raw": [], "sync": [], "async": []}
        # Interleaved, so load from other processes hits every variant alike.
        for _ in range(REPEATS):
            for name, run in (("raw", raw), ("sync", sync)):
                began = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - began)
            began = time.perf_counter()
            await codec_async()
            times["async"].append(time.perf_counter() - began)
    return times


def _report(times: dict[str, list[float]]) -> None:
    rate = {name: RECORDS / min(seconds) for name, seconds in times.items()}
    print(f"records: {RECORDS} (CallRequested + CallSucceeded), best of {REPEATS} runs")
    print(f"raw fastavro schemaless write+read : {rate['raw']:>10,.0f} events/s")
    print(f"Codec.encode + decode (async API)  : {rate['async']:>10,.0f} events/s")
    print(f"Codec.encode_cached + decode_cached: {rate['sync']:>10,.0f} events/s")
    print(f"ratio async/raw: {rate['async'] / rate['raw']:.2f}   sync/raw: {rate['sync'] / rate['raw']:.2f}"
          "   (target >= 0.80)")  # fmt: skip


def _times() -> dict[str, list[float]]:
    with kafka_bootstrap() as bootstrap:
        server = RegistryServer(
            KafkaSettings(bootstrap=bootstrap),
            topic=f"bench-{uuid.uuid4().hex[:6]}._schemas",
            port=0,
        )

        async def run() -> dict[str, Any]:
            await server.start()
            try:
                return await _measure(RegistrySettings(url=server.url))
            finally:
                await server.stop()

        return asyncio.run(run())


def rows() -> list[Row]:
    times = _times()
    rate = {name: Stat.of([RECORDS / s for s in seconds]) for name, seconds in times.items()}
    params = {"records": RECORDS, "repeats": REPEATS, "warmup": 1, "concurrency": 1,
              "events": "CallRequested + CallSucceeded"}  # fmt: skip
    return [
        Row("codec: encode+decode (async API)", "events/s", rate["async"], rate["raw"],
            "raw fastavro", params, target="ratio >= 0.8"),
        Row("codec: encode_cached+decode_cached", "events/s", rate["sync"], rate["raw"],
            "raw fastavro", params, target="ratio >= 0.8"),
    ]  # fmt: skip


def main() -> None:
    _report(_times())


if __name__ == "__main__":
    main()
