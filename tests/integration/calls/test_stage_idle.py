"""An idle :class:`~agents.runtime.Stage` long-polls, and that must cost nothing but empty fetches.

- Its fetch loop may wait in ``getmany`` for seconds, so a commit cannot wait for the loop's next
  turn: the batch that makes a commit due schedules it. Held in ``getmany`` for good once the
  records are handed over, the stage must still commit them.
- A stage with due times keeps its short fetch wait while a partition is parked: the resumed
  partition is not in the fetch in flight and waits for it to return (a 5 s long-poll made a 1 s
  webhook retry go out at 5.8 s). With nothing in hand or parked it long-polls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.runtime import Record, Stage
from infra.testing.pytest_plugin import NewTopic, unique
from streams.long_poll import LONG_POLL_MS
from streams.settings import KafkaSettings
from tests.integration.calls._support import committed_to

pytestmark = pytest.mark.integration

SHORT_WAIT_MS = 300


def _stage(kafka: KafkaSettings, group: str, topic: str, handle: Any, **kw: Any) -> Stage:
    return Stage(
        "idle", kafka, group, [topic], handle, prefetch=16, max_batch=16,
        commit_interval_s=0.2, session_timeout_s=10, rebalance_timeout_s=10, drain_timeout_s=10,
        fetch_wait_ms=SHORT_WAIT_MS, idle_fetch_wait_ms=LONG_POLL_MS, **kw,
    )  # fmt: skip


def _fetch_wait_ms(stage: Stage) -> int:
    consumer: Any = stage._consumer
    return int(consumer._fetcher._fetch_max_wait_ms)


async def _until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_an_idle_stage_commits_what_it_handled_without_its_fetch_loop_waking(
    kafka_settings: KafkaSettings,
    new_topic: NewTopic,
    producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = await new_topic(1, stem="idle-commit")
    sent = [await producer.send(topic, str(n).encode(), key=b"k") for n in range(5)]
    await asyncio.gather(*sent)
    handled: list[int] = []
    hold = asyncio.Event()  # set once every record is handled: the loop never turns again
    never = asyncio.Event()
    getmany = AIOKafkaConsumer.getmany

    async def held_getmany(self: AIOKafkaConsumer, *args: Any, **kw: Any) -> Any:
        batch = await getmany(self, *args, **kw)
        if hold.is_set():
            await never.wait()
        return batch

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", held_getmany)

    async def handle(records: list[Record]) -> None:
        handled.extend(r.offset for r in records)
        if len(handled) == 5:
            hold.set()

    group = unique("idle-commit")
    runner = _stage(kafka_settings, group, topic, handle)
    await runner.start()
    try:
        await asyncio.wait_for(hold.wait(), 60)
        assert await committed_to(kafka_settings, group, TopicPartition(topic, 0), 5) == 5
        assert sorted(handled) == [0, 1, 2, 3, 4]
    finally:
        never.set()
        await runner.stop()


async def test_a_stage_long_polls_only_with_nothing_in_hand_or_parked(
    kafka_settings: KafkaSettings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic(1, stem="idle-pace")
    tp = TopicPartition(topic, 0)
    handled = asyncio.Event()
    release = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        handled.set()
        await release.wait()

    def due(record: Record) -> float | None:
        return time.time() + 3600 if record.value == b"later" else None

    runner = _stage(kafka_settings, unique("idle-pace"), topic, handle, due=due)
    await runner.start()
    consumer: Any = runner._consumer
    try:
        await _until(lambda: _fetch_wait_ms(runner) == LONG_POLL_MS, "idle: no long poll")
        await producer.send_and_wait(topic, b"now", key=b"k")
        await asyncio.wait_for(handled.wait(), 60)
        assert _fetch_wait_ms(runner) == SHORT_WAIT_MS, "a batch in hand: the short wait"
        release.set()
        await _until(lambda: _fetch_wait_ms(runner) == LONG_POLL_MS, "done: no long poll")
        await producer.send_and_wait(topic, b"later", key=b"k")
        await _until(lambda: tp in consumer.paused(), "the record due later was not parked")
        assert _fetch_wait_ms(runner) == SHORT_WAIT_MS, "a parked partition: the short wait"
    finally:
        await runner.stop()
