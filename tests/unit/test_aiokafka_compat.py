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
