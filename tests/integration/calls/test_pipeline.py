from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents import _headers as hd
from streams import headers as h
from streams.admin import admin_client
from streams.codec import Codec
from streams.events.calls import Priority
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls import _support
from tests.integration.calls._support import TopicReader, publish, request, running_worker, terminal

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_requests_become_successes(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    reqs = [request("sim") for _ in range(20)]
    await publish(kafka_settings, codec, catalogue, reqs)
    settings = _support.worker_settings(catalogue, simulated=["sim"], runtime=runtime)
    async with (
        running_worker(kafka_settings, codec, catalogue, settings),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 20)
        if runtime == "faust":  # Faust commits in its own groups, on its own schedule
            return
        # while the worker runs, its stages commit what they finished (not only at stop)
        for stage, topic in (("router", "calls.requests"), ("lanes", "calls.lane.normal")):
            await _committed_to_end(
                kafka_settings, f"{catalogue.prefix}calls.{stage}", topic=catalogue.name(topic)
            )
    succeeded = results.of("call.succeeded")
    assert sorted(e.call_id for e in succeeded) == sorted(r.call_id for r in reqs)


async def _committed_to_end(
    kafka: KafkaSettings, group: str, *, topic: str, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    async with admin_client(kafka) as admin:
        while True:
            [described] = await admin.describe_topics([topic])
            tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
            await consumer.start()
            try:
                ends = await consumer.end_offsets(tps)
            finally:
                await consumer.stop()
            behind = {
                tp.partition: (committed[tp].offset if tp in committed else None, ends[tp])
                for tp in tps
                if ends[tp] > 0 and (tp not in committed or committed[tp].offset < ends[tp])
            }
            if not behind:
                return
            assert time.monotonic() < deadline, f"{group} has not committed {topic}: {behind}"
            await asyncio.sleep(0.3)


async def _raw_records(
    kafka: KafkaSettings, topic: str, n: int, timeout: float = 30.0
) -> list[tuple[bytes, dict[str, bytes]]]:
    """The first ``n`` records of ``topic``, undecoded (value bytes and headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout
        while len(found) < n:
            assert time.monotonic() < deadline, f"{topic}: {len(found)} of {n} records"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [
                    (r.value, {k: bytes(v) for k, v in r.headers}) for r in records if r.value
                ]
        return found
    finally:
        await consumer.stop()


async def test_router_forwards_the_request_bytes_with_their_headers(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    req = request("sim", priority=Priority.HIGH).model_copy(update={"traceparent": trace})
    await publish(
        kafka_settings, codec, catalogue, [req], headers={hd.REDRIVEN_FROM: b"calls.dlt/0/7"}
    )
    async with running_worker(
        kafka_settings, codec, catalogue, _support.worker_settings(catalogue, simulated=["sim"])
    ):
        [(lane_value, lane_headers)] = await _raw_records(
            kafka_settings, catalogue.name("calls.lane.high"), 1
        )
    [(request_value, request_headers)] = await _raw_records(
        kafka_settings, catalogue.name("calls.requests"), 1
    )
    # Routed by the headers the publisher wrote, forwarded as is: the very bytes it wrote.
    assert request_headers[h.CALL_SERVICE] == b"sim"
    assert request_headers[h.CALL_PRIORITY] == b"high"
    assert lane_value == request_value
    assert lane_headers[h.CALL_SERVICE] == b"sim"
    assert lane_headers[h.CALL_PRIORITY] == b"high"
    assert await codec.decode(lane_value) == req
    assert lane_headers[h.EVENT_TYPE] == b"call.requested"
    assert lane_headers[h.SCHEMA_ID] == str(int.from_bytes(lane_value[1:5], "big")).encode()
    assert lane_headers[h.TRACEPARENT] == trace.encode()
    assert lane_headers[hd.REDRIVEN_FROM] == b"calls.dlt/0/7"


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_requests_without_routing_headers_or_with_wrong_ones_run_as_their_value_says(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    """A partner's own producer writes no routing headers: the router decodes the request. One
    whose headers disagree with the value is routed by the headers (the router never decodes
    it), and the lane, which decodes it anyway, sends it on to where its value says."""
    bare = request("sim", priority=Priority.HIGH)
    lying = request("sim", priority=Priority.HIGH)
    topic = catalogue.name("calls.requests")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, await codec.encode(bare, topic), key=bare.key(), headers=[]
        )
        wrong = [
            (h.EVENT_TYPE, b"call.requested"),
            (h.CALL_SERVICE, b"not-sim"),
            (h.CALL_PRIORITY, b"low"),
        ]
        await producer.send_and_wait(
            topic, await codec.encode(lying, topic), key=lying.key(), headers=wrong
        )
    finally:
        await producer.stop()
    settings = _support.worker_settings(catalogue, simulated=["sim"], runtime=runtime)
    async with (
        running_worker(kafka_settings, codec, catalogue, settings),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 2)
        high = await _raw_records(kafka_settings, catalogue.name("calls.lane.high"), 2)
        [(low_value, low_headers)] = await _raw_records(
            kafka_settings, catalogue.name("calls.lane.low"), 1
        )
        await asyncio.sleep(1)  # time for a second outcome, were there one
        await results.poll()
    # the lying record went by its headers first (undecoded), then on to its real lane
    assert await codec.decode(low_value) == lying
    assert low_headers[h.CALL_SERVICE] == b"not-sim"
    in_high = [await codec.decode(v) for v, _ in high]
    assert sorted(e.event_id.hex for e in in_high) == sorted(e.event_id.hex for e in (bare, lying))
    assert lying in in_high
    for _, headers in high:  # both now carry the routing their value says
        assert headers[h.CALL_SERVICE] == b"sim"
        assert headers[h.CALL_PRIORITY] == b"high"
    ended = sorted(e.call_id for e in terminal(results))
    assert ended == sorted([bare.call_id, lying.call_id])  # each ran once
    assert {e.call_id for e in results.of("call.succeeded")} == {bare.call_id, lying.call_id}
