"""Issue 14 items 2 and 3: ``backbone replay`` names a missing target at once (also with
--dry-run), --create-target copies the source's partitions and configs, and Ctrl-C prints a
summary and a --resume token that continues without duplicating anything."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from infra.testing.pytest_plugin import NewConsumer, NewTopic, unique
from streams import headers
from streams.inspect import describe_topic
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._cli import backbone, one_error_line

pytestmark = pytest.mark.integration


async def _fill(producer: AIOKafkaProducer, topic: str, count: int, partitions: int) -> None:
    futures = [
        await producer.send(topic, b"x" * 100, key=str(i).encode(), partition=i % partitions)
        for i in range(count)
    ]
    await asyncio.gather(*futures)


async def test_missing_target_is_named_at_once_and_dry_run_checks_it(
    env: dict[str, str], new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    source = await new_topic(partitions=3)
    await _fill(producer, source, 30, 3)
    target = unique("missing-target")
    for extra in ((), ("--dry-run",)):
        done = await backbone(
            env, "replay", "--topic", source, "--since", "1h", "--to", target, *extra
        )
        assert done.returncode == 2
        assert one_error_line(done) == (
            f"error: target topic {target!r} does not exist (add --create-target to create it "
            f"with {source}'s partitions and configs, or create it yourself)"
        )
    dry = await backbone(env, "replay", "--topic", source, "--since", "1h", "--to", target,
                         "--dry-run", "--create-target")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert f"would create {target}" in dry.stdout


async def test_create_target_copies_partitions_and_configs(
    env: dict[str, str],
    kafka_settings: KafkaSettings,
    catalogue: Catalogue,
    producer: AIOKafkaProducer,
    new_consumer: NewConsumer,
) -> None:
    source = catalogue.name("calls.results")  # 6 partitions, 30 d retention in the catalogue
    await _fill(producer, source, 12, 6)
    target = unique("created-target")
    done = await backbone(env, "replay", "--topic", "calls.results", "--since", "1h", "--to",
                          target, "--create-target", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["copied"] == 12
    created = await describe_topic(kafka_settings, target)
    original = await describe_topic(kafka_settings, source)
    assert created is not None
    assert original is not None
    assert len(created.partitions) == len(original.partitions) == 6
    assert created.overrides == original.overrides
    assert sum(p.records for p in created.partitions) == 12


@pytest.mark.timeout(1200)  # tens of thousands of records, twice, on a loaded box
async def test_ctrl_c_prints_a_resume_token_that_copies_exactly_the_rest(
    env: dict[str, str],
    kafka_settings: KafkaSettings,
    new_topic: NewTopic,
    producer: AIOKafkaProducer,
    new_consumer: NewConsumer,
) -> None:
    consumer = await new_consumer()
    # Ctrl-C once the first copies are in the target; a copy fast enough to finish before this
    # test saw any (a quiet machine) is tried again with four times the records
    for count in (60_000, 240_000):
        source, target = await new_topic(partitions=3), await new_topic(partitions=3)
        await _fill(producer, source, count, 3)
        proc = subprocess.Popen(  # noqa: ASYNC220 - started, then polled from this loop
            [sys.executable, "-m", "infra.cli", "replay", "--topic", source, "--since", "1d",
             "--to", target],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # a pytest-xdist worker ignores SIGINT, and a child inherits that: a user's shell does not
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        tps = [TopicPartition(target, p) for p in range(3)]
        # a fetch of the assigned target returns as soon as the first copy lands there
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if await consumer.getmany(timeout_ms=100):
                break
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=240)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130, (out, err)
    match = re.search(r"interrupted: copied (\d+) of (\d+) records", out)
    assert match, out
    first, planned = int(match[1]), int(match[2])
    assert planned == count
    assert 0 < first < count
    token = re.search(r"resume with: backbone replay --resume (\S+)", out)
    assert token, out
    assert "Traceback" not in err

    rest = await backbone(env, "replay", "--resume", token[1], "--json", timeout=600)
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout)["copied"] == count - first

    # every source record is in the target exactly once
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    seen: set[bytes] = set()
    copies = 0
    while copies < count:
        batches = await consumer.getmany(timeout_ms=2000)
        if not batches:
            break
        for records in batches.values():
            for record in records:
                seen.add(dict(record.headers)[headers.REPLAYED_FROM])
                copies += 1
    assert copies == count
    assert len(seen) == count
