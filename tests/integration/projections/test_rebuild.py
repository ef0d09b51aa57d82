"""Rebuild reads every source record from where it was asked to start, every time.

Regression: the rebuild consumer had aiokafka's default reset strategy (``latest``) and then
called ``seek_to_beginning``. Right after ``assign`` the fetcher sends its own "latest" offset
lookup; when that answer arrived after the seek, aiokafka applied it to the pending "earliest"
reset and the rebuild started at the end: zero records, an empty store swapped in. It showed
under load, so this test rebuilds many times over many partitions.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from agents.projections import MetricsProjection
from streams import Publisher
from streams.codec import Codec
from streams.projections import Changes, PlainRecord, StateView, rebuild
from streams.projections.errors import ProjectionError
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.projections._mixed import mixed_events

pytestmark = pytest.mark.integration


async def test_every_rebuild_reads_every_record_from_the_start(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    events = mixed_events(240, seed=5)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(events)
    counts = []
    for _ in range(12):
        report = await rebuild(
            kafka_settings, codec, catalogue, MetricsProjection(), tmp_path, swap=False
        )
        counts.append(report.records)
    assert counts == [len(events)] * 12


class DiesInAPart(MetricsProjection):
    """Ends its process at the first record it applies in a rebuild part process."""

    def apply_plain(self, state: StateView, record: PlainRecord) -> Changes:
        if multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().apply_plain(state, record)


async def test_a_part_process_that_dies_fails_the_rebuild_and_nothing_is_swapped_in(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    events = mixed_events(120, seed=6)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(events)
    with pytest.raises(ProjectionError, match=r"ended without an answer \(exit code 3\)"):
        await rebuild(kafka_settings, codec, catalogue, DiesInAPart(), tmp_path, workers=2)
    assert multiprocessing.active_children() == []  # the other part was stopped
    assert names(tmp_path) == ["metrics.rebuild.sqlite"]  # no part left, nothing swapped in
    report = await rebuild(kafka_settings, codec, catalogue, MetricsProjection(), tmp_path)
    assert report.records == len(events)  # the next rebuild starts afresh
    assert names(tmp_path) == ["metrics.sqlite"]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
