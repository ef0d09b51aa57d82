"""Poison records on the consumed topics (issue 16 section 3 item 4): garbage bytes, an unknown
schema id and truncated Avro, interleaved with good records on one partition of
``calls.requests`` (the call worker) and of ``calls.results`` (the metrics projection, whose
dead letter is ``backbone.undecodable``).

Oracle: each poison record is in its topic's dead letter once, byte for byte, with the reason
``undecodable`` and its original coordinates; every good record around it is processed (one
outcome per good call; the projection's checkpoint passes the last record). The time from a poison
record to the next good record's outcome is printed by the ``make chaos`` version (``-s``), never
asserted: the box is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.projections import MetricsProjection
from agents.settings import WorkerSettings
from streams import Subscriber
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallRequested, CallSucceeded
from streams.events.monitoring import MetricsWindow
from streams.projections import ProjectionRunner
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import TopicReader, request, running_worker, terminal

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Poison:
    kind: str
    value: bytes
    offset: int = -1


def poisons(good: bytes) -> list[Poison]:
    """One of each kind, built from a good record's bytes."""
    unknown_id = b"\x00" + struct.pack(">I", 2_000_000_000) + good[5:]
    return [
        Poison("garbage", b"\xde\xad\xbe\xef not a record"),
        Poison("unknown schema id", unknown_id),
        Poison("truncated avro", good[: max(6, len(good) // 2)]),
    ]


async def _produce(
    kafka: KafkaSettings, topic: str, values: list[tuple[bytes, bytes]]
) -> list[int]:
    """Write (key, value) pairs to partition 0 in order; their offsets."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        offsets = []
        for key, value in values:
            meta = await producer.send_and_wait(topic, value, key=key, partition=0)
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


async def dead_letters(
    kafka: KafkaSettings, topic: str, want: int, timeout_s: float = 90
) -> list[tuple[bytes, dict[str, bytes], int]]:
    """Raw records of a dead-letter topic (value, headers, timestamp), polled until ``want``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes, dict[str, bytes], int]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.value or b"", dict(r.headers), r.timestamp) for r in records]
        await asyncio.sleep(1)  # a copy written twice would show up now
        for records in (await consumer.getmany(timeout_ms=500)).values():
            out += [(r.value or b"", dict(r.headers), r.timestamp) for r in records]
        return out
    finally:
        await consumer.stop()


def check_dead_letters(
    letters: list[tuple[bytes, dict[str, bytes], int]], sent: list[Poison], topic: str
) -> None:
    by_offset = Counter(int(hd[h.DLT_ORIGINAL_OFFSET]) for _, hd, _ in letters)
    assert {o: n for o, n in by_offset.items() if n > 1} == {}, (
        "a poison record dead-lettered twice"
    )
    assert set(by_offset) == {p.offset for p in sent}, (
        f"dead-lettered offsets {sorted(by_offset)}, poison at {sorted(p.offset for p in sent)}"
    )
    at = {p.offset: p for p in sent}
    for value, hd, _ in letters:
        poison = at[int(hd[h.DLT_ORIGINAL_OFFSET])]
        assert value == poison.value, f"{poison.kind}: the dead letter is not the record's bytes"
        assert hd[h.DLT_REASON] == b"undecodable", (poison.kind, hd[h.DLT_REASON])
        assert hd[h.DLT_ORIGINAL_TOPIC] == topic.encode()
        assert hd[h.DLT_ORIGINAL_PARTITION] == b"0"
        assert hd[h.DLT_MESSAGE], f"{poison.kind}: no reason text"
        print(f"  {poison.kind}: {hd[h.DLT_ERROR_CLASS].decode()}: {hd[h.DLT_MESSAGE].decode()}")


async def run_worker_poison(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str, rounds: int
) -> None:
    topic = catalogue.name("calls.requests")
    goods: list[CallRequested] = []
    plan: list[tuple[bytes, bytes, Poison | None]] = []
    for _ in range(rounds):
        for poison in poisons(await codec.encode(request("svc"), topic)):
            call = request("svc")
            goods.append(call)
            plan.append((b"k", await codec.encode(call, topic), None))
            plan.append((b"k", poison.value, poison))
    last = request("svc")
    goods.append(last)
    plan.append((b"k", await codec.encode(last, topic), None))
    offsets = await _produce(kafka, topic, [(k, v) for k, v, _ in plan])
    sent = [Poison(p.kind, p.value, off) for (_, _, p), off in zip(plan, offsets, strict=True) if p]
    settings = WorkerSettings.model_validate(
        {"group_id": f"{catalogue.prefix}calls", "runtime": runtime}
    )
    ids = {c.call_id for c in goods}
    async with (
        running_worker(kafka, codec, catalogue, settings, {"svc": ScriptedService("svc")}),
        TopicReader(kafka, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: {e.call_id for e in terminal(r)} >= ids, timeout=120)
        letters = await dead_letters(kafka, catalogue.name("calls.dlt"), len(sent))
        await results.poll()
    per_call = Counter(e.call_id for e in terminal(results) if e.call_id in ids)
    assert set(per_call) == ids, f"{len(ids - set(per_call))} good calls never ended"
    assert set(per_call.values()) == {1}, per_call
    assert all(e.event_type == "call.succeeded" for e in terminal(results))
    print(f"\n{runtime}: {len(sent)} poison records among {len(goods)} good ones")
    check_dead_letters(letters, sent, topic)
    stamps = {
        getattr(e, "call_id", ""): ts
        for e, _, ts in results.records
        if e.event_type == "call.succeeded"
    }
    after = {sent[i].offset: goods[i + 1].call_id for i in range(len(sent))}
    waits = [stamps[after[int(hd[h.DLT_ORIGINAL_OFFSET])]] - ts for _, hd, ts in letters]
    print(f"  next good outcome after a dead letter: max {max(waits)} ms (record timestamps)")


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_poison_requests_are_dead_lettered_and_the_partition_flows(
    runtime: str, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    await run_worker_poison(kafka_settings, codec, catalogue, runtime, rounds=2)


@pytest.mark.chaos
@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_many_poison_requests(
    runtime: str, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    await run_worker_poison(kafka_settings, codec, catalogue, runtime, rounds=100)


async def test_poison_outcomes_are_dead_lettered_and_the_metrics_projection_counts_the_rest(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    """The metrics projection reads ``calls.results``: poison records there go to
    ``backbone.undecodable``, every good outcome is counted once."""
    topic = catalogue.name("calls.results")
    at = datetime.now(UTC) - timedelta(hours=1)
    goods = [
        CallSucceeded(
            call_id=f"c{i}",
            service="svc",
            idempotency_key=f"k{i}",
            operation="op",
            status=200,
            latency_ms=5.0,
            attempt=0,
            occurred_at=at + timedelta(seconds=i),
        )
        for i in range(7)
    ]
    plan: list[tuple[bytes, bytes, Poison | None]] = []
    kinds = poisons(await codec.encode(goods[0], topic)) * 2
    for good, poison in zip(goods, [*kinds, None], strict=True):
        plan.append((b"svc", await codec.encode(good, topic), None))
        if poison is not None:
            plan.append((b"svc", poison.value, poison))
    offsets = await _produce(kafka_settings, topic, [(k, v) for k, v, _ in plan])
    sent = [Poison(p.kind, p.value, off) for (_, _, p), off in zip(plan, offsets, strict=True) if p]
    runner = ProjectionRunner(
        kafka_settings, codec, catalogue, MetricsProjection(window_s=60, grace_s=1),
        tmp_path, group_id=f"{catalogue.prefix}metrics", flush_interval_s=1.0,
    )  # fmt: skip
    task = asyncio.create_task(runner.run())
    try:
        letters = await dead_letters(kafka_settings, catalogue.name("backbone.undecodable"), 6)
        deadline = time.monotonic() + 120
        counted = 0
        while time.monotonic() < deadline and counted < len(goods):
            windows: list[MetricsWindow] = []
            async with Subscriber(
                kafka_settings, codec, catalogue, ["monitoring.metrics"], None, stop_at_end=True
            ) as sub:
                async for received in sub:
                    if isinstance(received.event, MetricsWindow):
                        windows.append(received.event)
            counted = sum(w.successes for w in windows if w.service == "svc")
            await asyncio.sleep(1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    print(f"\nmetrics projection: {len(sent)} poison records, {counted} successes counted")
    check_dead_letters(letters, sent, topic)
    assert counted == len(goods), f"{counted} successes counted for {len(goods)} good records"
