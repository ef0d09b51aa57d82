"""Rebalance churn (issue 16 section 3 item 3): one ``backbone worker`` runs throughout; a second
and a third join, and 10 s later leave (SIGTERM), every 10 s, while a stream of calls runs.

Oracle (:meth:`FleetReport.check`): the committed offsets of every group of the worker never move
back (polled every 0.5 s) and never skip (every published call has exactly one outcome, so no
record was committed past unhandled); the provider saw each call at most once; the lag returns
to 0; every leaving worker exits 0; the metrics projection counts each outcome once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.chaos._fleet import Fleet, Schedule, run_fleet

pytestmark = pytest.mark.integration


def churn(period_s: float, cycles: int | None) -> Schedule:
    """Two workers join, then leave, every ``period_s``: ``cycles`` times, or until the stream
    has ended when ``cycles`` is None."""

    async def schedule(fleet: Fleet, stream_done: asyncio.Event) -> None:
        n = 0
        while (cycles is None and not stream_done.is_set()) or (cycles is not None and n < cycles):
            n += 1
            await asyncio.sleep(period_s)
            await fleet.add()
            await fleet.add()
            await asyncio.sleep(period_s)
            await asyncio.gather(fleet.remove(signal.SIGTERM), fleet.remove(signal.SIGTERM))

    return schedule


@pytest.mark.chaos  # make test keeps the worker kills (test_worker_kills.py)
@pytest.mark.timeout(900)
async def test_workers_joining_and_leaving_neither_lose_nor_rewind(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    report = await run_fleet(
        tmp_path, kafka_settings, codec, schema_registry, catalogue,
        total=2000, rate=50, workers=1, schedule=churn(10, cycles=2),
    )  # fmt: skip
    report.check()
    assert report.stopped == [("SIGTERM", 0)] * 4


@pytest.mark.chaos
@pytest.mark.timeout(3600)
async def test_churn_for_the_whole_of_a_long_stream(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    report = await run_fleet(
        tmp_path, kafka_settings, codec, schema_registry, catalogue,
        total=60_000, rate=200, workers=1, schedule=churn(10, cycles=None),
    )  # fmt: skip
    report.check()
