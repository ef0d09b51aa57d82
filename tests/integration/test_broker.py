"""The foundation against the real broker: produce/consume, catalogue apply, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from infra.kafka.broker import BrokerOptions, LocalBroker, free_port, metadata_ok
from infra.testing.pytest_plugin import NewConsumer, NewTopic
from streams._reader import reader
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings
from streams.topics import Catalogue

pytestmark = pytest.mark.integration


async def test_produce_and_consume_round_trip(
    new_topic: NewTopic, producer: AIOKafkaProducer, new_consumer: NewConsumer
) -> None:
    topic = await new_topic(partitions=3)
    sent = [
        await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 3}".encode())
        for i in range(30)
    ]
    consumer = await new_consumer(topic)
    got: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + 20
    while len(got) < 30 and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        got.extend(r for records in batch.values() for r in records)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(30))
    assert {(m.partition, m.offset) for m in sent} == {(r.partition, r.offset) for r in got}


async def test_catalogue_applies_idempotently(kafka_settings: KafkaSettings) -> None:
    catalogue = Catalogue(prefix=f"idem{time.monotonic_ns()}.")
    first = await apply_catalogue(kafka_settings, catalogue, serving=True)
    assert sorted(first.created) == sorted(catalogue.prefix + s.name for s in catalogue)
    second = await apply_catalogue(kafka_settings, catalogue)
    assert not second.changed
    assert len(second.unchanged) == len(catalogue.specs)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def test_cli_topics_apply_twice_says_nothing_changed(kafka_settings: KafkaSettings) -> None:
    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_TOPIC_PREFIX": f"cli{time.monotonic_ns()}.",
    }
    first = _cli("topics", "apply", env=env)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    second = _cli("topics", "apply", env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout


def test_doctor_reports_an_unreachable_cluster_quickly() -> None:
    began = time.monotonic()
    done = _cli("doctor", "--json", env={"BACKBONE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert done.returncode == 1
    assert time.monotonic() - began < 15
    assert '"name": "kafka"' in done.stdout
    assert '"ok": false' in done.stdout


def test_port_taken_is_a_clear_error(kafka_broker: LocalBroker) -> None:
    from infra.errors import BrokerError

    broker = LocalBroker(BrokerOptions(port=kafka_broker.port))
    with pytest.raises(BrokerError, match="already in use"):
        broker.start()
    assert broker.process is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited already
    except FileNotFoundError:
        return False


def test_broker_dies_with_the_process_that_started_it() -> None:
    """SIGKILL the parent: the kernel's parent-death signal must take the broker down too."""
    script = (
        "from infra.kafka.broker import LocalBroker\n"
        "b = LocalBroker(); b.start(); print(b.process.pid, b.bootstrap, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        pid, bootstrap = parent.stdout.readline().split()
        assert metadata_ok(bootstrap)
        parent.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _alive(int(pid)):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"broker {pid} survived its parent")


async def test_an_offset_lookup_learns_all_its_new_topics_in_one_metadata_refresh(
    kafka_settings: KafkaSettings, new_topic: NewTopic
) -> None:
    """aiokafka alone learns one unknown topic per retry (8 topics: 8 refreshes, 8 back-offs)."""
    topics = [await new_topic(2) for _ in range(8)]
    tps = [TopicPartition(t, p) for t in topics for p in range(2)]
    async with reader(kafka_settings) as consumer:
        refresh = consumer._client._metadata_update
        refreshes = 0

        async def counted(cluster: Any, wanted: Any) -> bool:
            nonlocal refreshes
            refreshes += 1
            return bool(await refresh(cluster, wanted))

        consumer._client._metadata_update = counted
        ends = await consumer.end_offsets(tps)
    assert ends == dict.fromkeys(tps, 0)
    assert refreshes <= 2, refreshes
