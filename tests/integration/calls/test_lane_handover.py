"""Faust runtime: a lane partition's first record since its assignment waits until the call
ledger holds what its previous owner wrote, so a call that owner ran is skipped, not run again.

The previous owner is played by the test: it writes a claim and a settled outcome for a lane
record, then the record itself (run, not yet committed), while the worker's ledger follower is
held back (fetched, not applied), as it can be behind the lanes on a loaded machine. (The aiokafka
runtime makes the same wait when partitions are assigned: ``Stage.on_assigned``.)
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from agents.ledger import SUCCEEDED
from agents.worker import CallWorker
from streams import headers as h
from streams.admin import partitions
from streams.codec import Codec
from streams.events.calls import CallStarted, CallSucceeded
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import TopicReader, publish, request, worker_settings

pytestmark = pytest.mark.integration

LANE = "calls.lane.normal"


async def _lane_end(kafka: KafkaSettings, topic: str) -> TopicPartition:
    """The lane partition of service ``svc`` (lanes are keyed by service) and its end offset."""
    found = (await partitions(kafka, [topic]))[topic]
    part = DefaultPartitioner()(b"svc", found, found)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, part)
        return tp, (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


def _call_ids(reader: TopicReader) -> set[str]:
    return {getattr(e, "call_id", "") for e in reader.events}


async def test_a_call_run_by_the_previous_owner_is_not_run_again(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    settings = worker_settings(catalogue, runtime="faust")
    worker = CallWorker(kafka_settings, codec, catalogue, settings, connectors={"svc": svc})
    follower = worker._follower._follower  # the ledger's reader of calls.claims / calls.results
    apply, gate = follower._on_record, asyncio.Event()

    async def held_back(record: ConsumerRecord[bytes, bytes]) -> None:
        await gate.wait()
        await apply(record)

    ran = request("svc")  # run by the previous owner
    control = request("svc")  # a new call behind it on the same lane partition
    await worker.start()
    try:
        follower._on_record = held_back
        (tp, offset) = await _lane_end(kafka_settings, catalogue.name(LANE))
        claim = CallStarted(
            call_id=ran.call_id,
            service="svc",
            attempt=0,
            idempotency_key=ran.idempotency_key,
            claim_id=uuid.uuid4().hex,
            lane_topic=LANE,
            lane_partition=tp.partition,
            lane_offset=offset,
            worker="previous-owner",
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap, acks="all")
        await producer.start()
        try:
            claims, results = catalogue.name("calls.claims"), catalogue.name("calls.results")
            key = ran.idempotency_key.encode()
            await producer.send_and_wait(
                claims, await codec.encode(claim, claims), key=key, headers=[]
            )
            settled = [
                (h.IDEMPOTENCY_KEY, key),
                (h.CLAIM, claim.claim_id.encode()),
                (h.CALL_END, SUCCEEDED.encode()),
            ]
            done = CallSucceeded(
                call_id=ran.call_id,
                service="svc",
                operation=ran.operation,
                status=200,
                latency_ms=1.0,
                attempt=0,
                idempotency_key=ran.idempotency_key,
            )
            await producer.send_and_wait(
                results, await codec.encode(done, results), key=key, headers=settled
            )
            lane = await producer.send_and_wait(
                tp.topic, await codec.encode(ran, tp.topic), key=b"svc", partition=tp.partition
            )
            assert lane.offset == offset
        finally:
            await producer.stop()
        await asyncio.sleep(3)  # the lane has the record; the ledger has not applied the claim
        assert ran.call_id not in svc.attempts, "run while the ledger was behind"
        gate.set()
        async with TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as out:
            await publish(kafka_settings, codec, catalogue, [control])
            await out.wait_for(lambda r: control.call_id in _call_ids(r))
    finally:
        gate.set()
        await worker.stop()
    assert ran.call_id not in svc.attempts, "a call its previous owner ran was run again"
    # skipped: no outcome but the previous owner's
    assert [e.event_id for e in out.events if getattr(e, "call_id", None) == ran.call_id] == [
        done.event_id
    ]
    assert len(svc.attempts[control.call_id]) == 1
