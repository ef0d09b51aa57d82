"""The runner's batch apply of a task's plain records: dedupe, and one by one when it raises."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from agents.projections.metrics import MetricsProjection
from streams.codec import Codec
from streams.projections import (
    ApplyFailed,
    PlainRecord,
    ProjectionRunner,
    SqliteStore,
    StateView,
    TaskView,
)
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.unit.projections.test_metrics_batch import _events, _plain


class FailsOnGeo(MetricsProjection):
    """Raises on the records of service ``geo`` (so every batch holding one raises)."""

    def apply_plain(self, state: StateView, record: PlainRecord) -> Any:
        if record.datum["service"] == "geo":
            raise ValueError("geo is not counted")
        return super().apply_plain(state, record)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    found = SqliteStore(tmp_path / "s.sqlite")
    yield found
    found.close()


def _runner(projection: MetricsProjection, tmp_path: Path) -> ProjectionRunner:
    # nothing here talks to Kafka or the registry: only the apply path is used
    codec = Codec(RegistryClient(RegistrySettings(url="http://127.0.0.1:9")))
    kafka = KafkaSettings(bootstrap="127.0.0.1:9", client_id="t")
    return ProjectionRunner(kafka, codec, Catalogue(prefix="t."), projection, tmp_path)


def _run(records: list[PlainRecord]) -> list[tuple[ConsumerRecord[bytes, bytes], PlainRecord]]:
    return [
        (ConsumerRecord(r.topic, r.partition, r.offset, 0, 0, None, b"", None, 0, 0, []), r)
        for r in records
    ]


def test_a_failing_record_is_reported_alone_and_the_others_applied_in_order(
    store: SqliteStore, tmp_path: Path
) -> None:
    records = _plain(_events(random.Random(2), 200), task=0)
    runner = _runner(FailsOnGeo(), tmp_path)
    view = TaskView(store, 0)
    emits, failed = runner.apply_plain_run(view, _run(records))
    geo = [r for r in records if r.datum["service"] == "geo"]
    assert [plain.offset for plain in (p for _, p in _run(geo))] == [r.offset for r, _ in failed]
    assert all(isinstance(reason, ApplyFailed) for _, reason in failed)
    assert all(r.datum["event_id"] not in view.new_ids for r in geo)
    # the others as one batch of the plain projection gives them
    others = [r for r in records if r.datum["service"] != "geo"]
    expected = TaskView(store, 0)
    plain_runner = _runner(MetricsProjection(), tmp_path)
    expected_emits, none = plain_runner.apply_plain_run(expected, _run(others))
    assert none == []
    assert emits == expected_emits
    assert view.pending == expected.pending
    assert runner._uncommitted["applied"] == len(others)


def test_a_redelivered_event_id_is_applied_once(store: SqliteStore, tmp_path: Path) -> None:
    records = _plain(_events(random.Random(3), 50), task=0)
    runner = _runner(MetricsProjection(), tmp_path)
    view = TaskView(store, 0)
    runner.apply_plain_run(view, _run(records[:30]))
    runner._store = store
    runner._seen_changes(view)  # the first run is checkpointed, its ids as blocks
    store.commit_many({0: view.pending}, {}, {0: view.seen_writes})
    assert view.seen_writes.put
    assert not view.seen_writes.drop
    again = TaskView(store, 0)
    runner.apply_plain_run(again, _run(records[20:] + records[40:]))  # 10 stored, 10 in-run
    assert runner._uncommitted["duplicates"] == 20
    assert runner._uncommitted["applied"] == 50
