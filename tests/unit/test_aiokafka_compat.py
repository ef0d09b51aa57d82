"""Pins the aiokafka internals streams/_aiokafka_compat.py relies on: an upgrade that changes
them fails here, in one place, instead of in a producer in production."""

from __future__ import annotations

import contextlib

import aiokafka
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import NodeNotReadyError
from aiokafka.protocol.produce import ProduceRequest

from streams._aiokafka_compat import CHECKED_VERSIONS, fail_buffered, sender_failed, track_sent
from streams.errors import KafkaUnavailableError, WriteOutcomeUnknownError


def test_the_installed_aiokafka_is_one_the_workarounds_were_checked_against() -> None:
    assert aiokafka.__version__.startswith(CHECKED_VERSIONS), (
        f"aiokafka {aiokafka.__version__}: re-check streams/_aiokafka_compat.py (aiokafka#1017, "
        "#1101: is there a public way to reset the idempotent producer or abandon its buffer "
        "now?) and add the version to CHECKED_VERSIONS"
    )


async def test_fail_buffered_fails_every_held_record_and_refuses_new_ones() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", enable_idempotence=True)
    accumulator = producer._message_accumulator
    tp = TopicPartition("t", 0)
    futures = [await accumulator.add_message(tp, None, b"v%d" % i, timeout=1) for i in range(3)]
    assert not sender_failed(producer)  # never started: no sender task yet
    withdrawn = KafkaUnavailableError("withdrawn")
    fail_buffered(producer, withdrawn, WriteOutcomeUnknownError("sent"))
    for future in futures:
        with pytest.raises(KafkaUnavailableError, match="withdrawn"):
            future.result()
    assert not accumulator._batches  # nothing left for a sender to drain
    with pytest.raises(KafkaUnavailableError):  # the accumulator refuses new records
        await accumulator.add_message(tp, None, b"late", timeout=1)
    await producer.stop()


async def test_fail_buffered_tells_records_already_sent_from_records_never_sent() -> None:
    """A batch a produce request carried to a live connection may be in the log: its records
    fail with the "sent" error; a batch whose node could not be reached, or never drained, with
    "withdrawn"."""
    # (not idempotent here only because draining an idempotent batch needs a producer id)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    client, accumulator = producer.client, producer._message_accumulator
    ready = {1: True, 2: False}

    async def fake_ready(node_id: int, **_: object) -> bool:
        return ready[node_id]

    async def fake_send(node_id: int, request: object, **_: object) -> None:
        return None

    client.ready = fake_ready
    client.send = fake_send  # (the wire)
    track_sent(producer)
    sent_tp, unreachable_tp, held_tp = (TopicPartition("t", p) for p in range(3))
    on_the_wire = await accumulator.add_message(sent_tp, None, b"on the wire", timeout=1)
    unreachable = await accumulator.add_message(unreachable_tp, None, b"no node", timeout=1)
    held = await accumulator.add_message(held_tp, None, b"in the buffer", timeout=1)
    for tp, node in ((sent_tp, 1), (unreachable_tp, 2)):  # what the sender does
        batch = accumulator._pop_batch(tp)
        request = ProduceRequest(None, -1, 1000, [(tp.topic, [(tp.partition, b"")])])
        with contextlib.suppress(NodeNotReadyError):
            await client.send(node, request)
        accumulator.reenqueue(batch)  # answered with a retriable error, or no connection
    fail_buffered(producer, KafkaUnavailableError("withdrawn"), WriteOutcomeUnknownError("sent"))
    with pytest.raises(WriteOutcomeUnknownError):
        on_the_wire.result()
    for future in (unreachable, held):
        with pytest.raises(KafkaUnavailableError, match="withdrawn"):
            future.result()
    await producer.stop()


async def test_describe_log_dirs_rides_on_the_admin_clients_private_connection() -> None:
    """log_dir_sizes sends its own request through these (aiokafka has no DescribeLogDirs)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams._aiokafka_compat import _DescribeLogDirsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9")
    assert callable(admin._send_request_to_node)
    assert hasattr(admin._client, "cluster")
    # the negotiated version picks our v1 struct, and it encodes (KIP-896 removed v0 in Kafka 4)
    request = _DescribeLogDirsRequest([("t", [0, 1])]).prepare({35: (1, 4)})
    assert request.API_VERSION == 1
    assert request.encode().startswith(b"\x00\x00\x00\x01\x00\x01t")
