"""Pins the aiokafka internals streams/_aiokafka_compat.py relies on: an upgrade that changes
them fails here, in one place, instead of in a producer in production."""

from __future__ import annotations

import aiokafka
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from streams._aiokafka_compat import CHECKED_VERSIONS, fail_buffered, sender_failed
from streams.errors import KafkaUnavailableError


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
    fail_buffered(producer, withdrawn)
    for future in futures:
        with pytest.raises(KafkaUnavailableError, match="withdrawn"):
            future.result()
    assert not accumulator._batches  # nothing left for a sender to drain
    with pytest.raises(KafkaUnavailableError):  # the accumulator refuses new records
        await accumulator.add_message(tp, None, b"late", timeout=1)
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
