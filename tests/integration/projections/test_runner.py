"""The projection runner on the real broker: recount, duplicates, restarts, lost store, dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams import Publisher
from streams.admin import apply_catalogue, partitions
from streams.codec import Codec
from streams.events import Event, event_class
from streams.projections import ProjectionRunner, RestoreFailed, SqliteStore, store_path
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.projections._support import (
    CallCounts,
    lose_store,
    read_state,
    running,
    wait_for,
    with_changelog,
)

pytestmark = pytest.mark.integration


def succeeded(i: int, service: str) -> Event:
    return event_class("call.succeeded").model_validate(
        {
            "call_id": f"c{i}",
            "service": service,
            "operation": "op",
            "status": 200,
            "latency_ms": 10.0 + i,
            "attempt": 0,
            "idempotency_key": f"k{i}",
        }
    )


def failed(i: int, service: str) -> Event:
    return event_class("call.failed").model_validate(
        {
            "call_id": f"c{i}",
            "service": service,
            "operation": "op",
            "error_class": "Timeout",
            "message": "slow",
            "retriable": True,
            "attempt": 0,
            "idempotency_key": f"k{i}",
        }
    )


def recount(events: list[Event]) -> dict[str, int]:
    counts = Counter(f"count/{e.service}/{e.event_type}" for e in events)  # type: ignore[attr-defined]
    return dict(counts)


@pytest.fixture
async def cat(kafka_settings: KafkaSettings, catalogue: Catalogue) -> Catalogue:
    extended = with_changelog(catalogue, CallCounts.changelog)
    await apply_catalogue(kafka_settings, extended)
    return extended


async def publish(kafka: KafkaSettings, codec: Codec, cat: Catalogue, events: list[Event]) -> None:
    async with Publisher(kafka, codec, cat) as publisher:
        await publisher.publish_many(events)


def runner(kafka: KafkaSettings, codec: Codec, cat: Catalogue, store: Path) -> ProjectionRunner:
    return ProjectionRunner(kafka, codec, cat, CallCounts(), store, group_id=f"{cat.prefix}counts")


async def test_counts_equal_a_recount_and_survive_duplicates_restarts_and_a_lost_store(
    kafka_settings: KafkaSettings, codec: Codec, cat: Catalogue, tmp_path: Path
) -> None:
    first = [succeeded(i, "a" if i % 3 else "b") for i in range(60)] + [
        failed(i, "a") for i in range(60, 80)
    ]
    await publish(kafka_settings, codec, cat, first)
    live = runner(kafka_settings, codec, cat, tmp_path)
    async with running(live):
        await wait_for(lambda: live.status.applied == len(first), what="the first batch")
        await asyncio.sleep(2)  # a batch read again (the race below) would be counted by now
    assert read_state(tmp_path, "counts") == recount(first)
    # a batch fetched before the runner sought to its store's checkpoints, and applied after
    # that seek, was read a second time (each record counted a duplicate): not any more
    assert live.status.duplicates == 0

    # duplicates: the same events (same event ids) again, then a restart on the same store
    second = [succeeded(i, "c") for i in range(80, 100)]
    await publish(kafka_settings, codec, cat, first[:30] + second)
    again = runner(kafka_settings, codec, cat, tmp_path)
    async with running(again):
        await wait_for(lambda: again.status.applied + again.status.duplicates >= 50, what="batch 2")
    assert again.status.applied == len(second), "a restart re-applied checkpointed records"
    assert again.status.duplicates == 30
    assert read_state(tmp_path, "counts") == recount(first + second)

    # the local store is lost: it comes back from the changelog, not by re-reading the sources
    lose_store(tmp_path, "counts")
    third = [failed(i, "c") for i in range(100, 110)]
    await publish(kafka_settings, codec, cat, third)
    restored = runner(kafka_settings, codec, cat, tmp_path)
    async with running(restored):
        await wait_for(lambda: restored.status.applied >= len(third), what="batch 3")
        # the remembered ids came back too (blocks in the changelog): redelivered, not applied
        await publish(kafka_settings, codec, cat, first[30:40] + third[:5])
        await wait_for(lambda: restored.status.duplicates >= 15, what="the duplicates")
    assert restored.status.restored > 0
    assert restored.status.applied == len(third), "the sources were replayed instead of restored"
    assert restored.status.duplicates == 15
    assert read_state(tmp_path, "counts") == recount(first + second + third)


async def test_a_record_that_fails_to_apply_is_dead_lettered_with_its_reason(
    kafka_settings: KafkaSettings,
    codec: Codec,
    cat: Catalogue,
    tmp_path: Path,
    new_consumer: object,
) -> None:
    events = [succeeded(0, "a"), succeeded(1, "boom"), succeeded(2, "a")]
    await publish(kafka_settings, codec, cat, events)
    live = runner(kafka_settings, codec, cat, tmp_path)
    async with running(live):
        await wait_for(lambda: live.status.applied + live.status.dead_lettered == 3)
    assert live.status.dead_lettered == 1
    assert read_state(tmp_path, "counts") == {"count/a/call.succeeded": 2}
    consumer = await new_consumer(cat.name("backbone.undecodable"))  # type: ignore[operator]
    record = await consumer.getone()
    headers = dict(record.headers)
    assert headers["backbone-dlt-reason"] == b"fatal"
    assert headers["backbone-dlt-message"] == b"ValueError: boom is not a service"
    assert headers["backbone-dlt-error-class"] == b"ApplyFailed"
    assert headers["backbone-dlt-original-topic"] == cat.name("calls.results").encode()
    assert record.key == b"c1"


def owned_counts(store_dir: Path, tasks: tuple[int, ...]) -> dict[str, int]:
    store = SqliteStore(store_path(store_dir, "counts"))
    try:
        out: dict[str, int] = {}
        for task, key, value in store.items(prefix="count/"):
            if task in tasks:
                out[key] = out.get(key, 0) + value
        return out
    finally:
        store.close()


async def test_tasks_move_to_a_new_member_with_their_state(
    kafka_settings: KafkaSettings, codec: Codec, cat: Catalogue, tmp_path: Path
) -> None:
    first = [succeeded(i, "a" if i % 2 else "b") for i in range(60)]
    await publish(kafka_settings, codec, cat, first)
    one = runner(kafka_settings, codec, cat, tmp_path / "one")
    two = runner(kafka_settings, codec, cat, tmp_path / "two")
    async with running(one):
        await wait_for(lambda: one.status.applied == len(first), what="member one")
        async with running(two):
            await wait_for(
                lambda: (
                    len(one.status.tasks) + len(two.status.tasks) == 6
                    and one.status.tasks != ()
                    and two.status.tasks != ()
                ),
                what="the tasks split between the two members",
            )
            assert two.status.restored > 0, "the new member did not restore from the changelog"
            second = [failed(i, "a") for i in range(60, 90)]
            await publish(kafka_settings, codec, cat, second)
            await wait_for(
                lambda: one.status.applied + two.status.applied == len(first) + len(second),
                what="both members applying the new records",
            )
            assert two.status.duplicates == 0
            merged: Counter[str] = Counter(owned_counts(tmp_path / "one", one.status.tasks))
            merged.update(owned_counts(tmp_path / "two", two.status.tasks))
    assert dict(merged) == recount(first + second)


async def test_each_store_position_is_just_past_its_last_changelog_record(
    kafka_settings: KafkaSettings, codec: Codec, cat: Catalogue, tmp_path: Path
) -> None:
    """Changelog writes go in record batches (several per task here: thousands of remembered
    event ids); the position the store keeps must be the last record's offset + 1, so a restart
    restores nothing and a restore after a crash misses nothing."""
    events = [succeeded(i, f"s{i % 7}") for i in range(3_000)]
    await publish(kafka_settings, codec, cat, events)
    live = runner(kafka_settings, codec, cat, tmp_path)
    async with running(live):
        await wait_for(lambda: live.status.applied == len(events), what="the events")
    changelog = cat.name(CallCounts.changelog)
    found = await partitions(kafka_settings, [changelog])
    tps = [TopicPartition(changelog, p) for p in found[changelog]]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_settings.bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    store = SqliteStore(store_path(tmp_path, "counts"))
    try:
        positions = {tp: store.changelog_offset(tp.partition) for tp in tps}
    finally:
        store.close()
    # the last transaction writing to a partition ends it with one commit marker
    assert positions == {tp: end - 1 for tp, end in ends.items() if end > 0}
    again = runner(kafka_settings, codec, cat, tmp_path)
    async with running(again):
        await wait_for(lambda: again.status.tasks != (), what="the restart")
    assert again.status.restored == 0
    assert read_state(tmp_path, "counts") == recount(events)


async def test_a_restore_that_fails_ends_the_runner_instead_of_stalling_it(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    """aiokafka logs an error raised by a rebalance listener and goes on: a restore that failed
    (here its changelog topic does not exist) left the runner "restoring" for ever, its records
    read and skipped. Now the runner's next step raises it (a supervisor replaces the runner)."""
    cat = with_changelog(catalogue, CallCounts.changelog)  # never applied: no changelog topic
    await publish(kafka_settings, codec, cat, [succeeded(0, "a")])
    quick = kafka_settings.model_copy(update={"request_timeout_ms": 3_000})
    live = runner(quick, codec, cat, tmp_path)
    with pytest.raises(RestoreFailed, match=CallCounts.changelog):
        async with asyncio.timeout(120):  # a stall fails here, not at the suite's timeout
            await live.run()
    assert live.status.applied == 0


async def _records_of(
    kafka: KafkaSettings, codec: Codec, topic: str
) -> list[tuple[int, int, Event]]:
    """``(partition, offset, event)`` of every record of a topic."""
    found = await partitions(kafka, [topic])
    tps = [TopicPartition(topic, p) for p in found[topic]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[int, int, Event]] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, start in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, start)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            for tp, records in (await consumer.getmany(timeout_ms=1_000)).items():
                for r in records:
                    out.append((tp.partition, r.offset, await codec.decode(r.value or b"")))
    finally:
        await consumer.stop()
    return out


async def test_a_changelog_written_before_blocks_is_restored_and_dedupes(
    kafka_settings: KafkaSettings, codec: Codec, cat: Catalogue, tmp_path: Path
) -> None:
    """A changelog the previous store version wrote (one record per remembered event id,
    ``__seen__/<id>`` -> ``{"expires_ms": n}``, tombstones for evicted ids) restores a lost
    store: the counts, the checkpoint, and the ids, so redelivered events change nothing."""
    events = [succeeded(i, "a" if i % 3 else "b") for i in range(60)]
    await publish(kafka_settings, codec, cat, events)
    source = cat.name("calls.results")
    window = CallCounts.dedupe_window_ms
    assert window is not None
    changelog: list[tuple[int, str, bytes | None]] = []
    ends: dict[int, int] = {}
    counts: Counter[tuple[int, str]] = Counter()
    for partition, offset, event in await _records_of(kafka_settings, codec, source):
        counts[(partition, f"count/{event.service}/{event.event_type}")] += 1  # type: ignore[attr-defined]
        ends[partition] = max(ends.get(partition, 0), offset + 1)
        expires = int(event.occurred_at.timestamp() * 1000) + window
        changelog.append((partition, f"__seen__/{event.event_id}", b'{"expires_ms":%d}' % expires))
    changelog.append((0, "__seen__/00000000-0000-4000-8000-000000000000", b'{"expires_ms":1}'))
    changelog.append((0, "__seen__/00000000-0000-4000-8000-000000000000", None))  # evicted
    for (partition, key), n in counts.items():
        changelog.append((partition, key, str(n).encode()))
    for partition, end in ends.items():
        changelog.append((partition, "__checkpoint__", b'{"%s":%d}' % (source.encode(), end)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in changelog:
            await producer.send_and_wait(
                cat.name(CallCounts.changelog), value, key=key.encode(), partition=partition
            )
    finally:
        await producer.stop()

    restored = runner(kafka_settings, codec, cat, tmp_path)  # no local store: restore
    async with running(restored):
        await wait_for(lambda: restored.status.tasks != (), what="the restore")
        await publish(kafka_settings, codec, cat, events[:20])  # the same event ids again
        await wait_for(lambda: restored.status.duplicates >= 20, what="the duplicates")
    assert restored.status.restored == len(changelog)
    assert restored.status.applied == 0
    assert read_state(tmp_path, "counts") == recount(events)
    store = SqliteStore(store_path(tmp_path, "counts"))
    try:
        blocks = list(store.seen_rows())
        assert blocks
        assert all(legacy for *_, legacy, _ in blocks)
        assert sum(len(ids) for *_, ids in blocks) == 16 * len(events)  # the evicted id gone
    finally:
        store.close()
