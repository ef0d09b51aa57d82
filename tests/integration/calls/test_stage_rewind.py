"""Issue 17 on the real broker: batches failing one after another must not make the stage commit
past records it never handled.

The real :class:`~agents.runtime.Stage` with a stage's settings reads a topic holding exactly its
prefetch: every batch is in flight at once; they fail one after another, 50 ms apart (as during
a broker outage), then every retry succeeds. Each record must be handled exactly once (the
failures handled nothing) and the group's committed offset must reach the end. Before the fix,
each failure sought its own batch's first record, the last one forward past the earlier ones,
and 56 of the lanes' 64 records were committed without ever being handled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from agents.runtime import Record, Stage
from agents.settings import WorkerSettings
from infra.testing.pytest_plugin import NewTopic, unique
from streams.settings import KafkaSettings
from streams.supervise import FATAL
from tests.integration.calls._support import committed_to

pytestmark = pytest.mark.integration

LANES = WorkerSettings()


class FailingThenFine:
    """A handler whose first ``failures`` batches all start, then fail 50 ms apart."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.handled: Counter[int] = Counter()
        self._all_in = asyncio.Event()

    async def __call__(self, records: list[Record]) -> None:
        turn = self.calls
        self.calls += 1
        if turn < self.failures:
            if self.calls == self.failures:
                self._all_in.set()
            await asyncio.wait_for(self._all_in.wait(), timeout=60)
            await asyncio.sleep(0.05 * (turn + 1))
            raise RuntimeError(f"batch {turn} could not write its outputs")
        self.handled.update(r.offset for r in records)


@pytest.mark.parametrize(
    ("stage", "prefetch", "batch"),
    [
        ("lanes", LANES.lane_prefetch, LANES.lane_batch),
        ("router", LANES.router_prefetch, LANES.router_batch),
    ],
)
async def test_failures_in_a_row_neither_skip_nor_commit_unhandled_records(
    kafka_settings: KafkaSettings,
    new_topic: NewTopic,
    producer: AIOKafkaProducer,
    stage: str,
    prefetch: int,
    batch: int,
) -> None:
    topic = await new_topic(1, stem=f"rewind-{stage}")
    sent = [await producer.send(topic, str(n).encode(), key=b"k") for n in range(prefetch)]
    await asyncio.gather(*sent)
    handler = FailingThenFine(failures=prefetch // batch)
    group = unique(f"rewind-{stage}")
    runner = Stage(
        stage,
        kafka_settings,
        group,
        [topic],
        handler,
        prefetch=prefetch,
        max_batch=batch,
        commit_interval_s=0.2,
        session_timeout_s=10,
        rebalance_timeout_s=10,
        drain_timeout_s=10,
        fetch_wait_ms=int(LANES.batch_wait_s * 1000),
    )
    await runner.start()
    try:
        committed = await committed_to(kafka_settings, group, TopicPartition(topic, 0), prefetch)
        # a commit of the end means everything below it was handled: check that it was
        unhandled = sorted(set(range(prefetch)) - set(handler.handled))
        assert not unhandled, (
            f"committed {committed} of {prefetch}, but {len(unhandled)} records were never "
            f"handled (first: {unhandled[:10]})"
        )
        assert handler.calls >= handler.failures, "the batches did not all fail first"
        assert set(handler.handled.values()) == {1}, "a record was handled more than once"
    finally:
        await runner.stop()


async def test_a_fetch_loop_that_dies_is_reported_fatal_and_the_stage_still_stops(
    kafka_settings: KafkaSettings, new_topic: NewTopic, producer: AIOKafkaProducer
) -> None:
    """Kafka's errors the loop handles itself; anything else (a bug) must not end it silently."""
    topic = await new_topic(1, stem="dies")
    await (await producer.send(topic, b"x", key=b"k"))
    reported: list[dict[str, Any]] = []
    said = asyncio.Event()

    def report(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(context)
        said.set()

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report)

    def due(_record: Record) -> float | None:
        raise ValueError("a bug in the stage")

    async def handle(_records: list[Record]) -> None:
        raise AssertionError("never reached: the loop dies before handing records over")

    runner = Stage(
        "dies", kafka_settings, unique("dies"), [topic], handle, prefetch=8, max_batch=8,
        commit_interval_s=0.2, session_timeout_s=10, rebalance_timeout_s=10,
        drain_timeout_s=10, due=due,
    )  # fmt: skip
    await runner.start()
    try:
        await asyncio.wait_for(said.wait(), timeout=60)
    finally:
        await runner.stop()  # completes: the death was reported, not raised again here
        loop.set_exception_handler(None)
    assert runner.failure == "died: ValueError: a bug in the stage"
    [context] = [c for c in reported if c.get(FATAL)]
    assert "stage dies died for good" in context["message"], context
