"""Worker kills (issue 16 section 3 item 1): two ``backbone worker`` processes take a stream of
calls to a local HTTP provider; one at a time is killed with SIGKILL or stopped with SIGTERM and
replaced, alternately, while the stream runs.

Oracle (:meth:`FleetReport.check`): every published call has exactly one outcome in
``calls.results`` (read committed); the provider saw each ``Idempotency-Key`` at most once (a
call in flight at a SIGKILL is dead-lettered ``OutcomeUnknownError``, never run again); committed
offsets never move back; the lag returns to 0; every SIGTERM ends with exit code 0; and the
metrics projection, run live beside the fleet, counts each success and dead letter once.
The short run (a few thousand calls, 2 kills of each kind) is in ``make test``; 100k calls and
10 of each in ``make chaos`` (``BACKBONE_CHAOS_CALLS`` overrides the count; ``BACKBONE_CHAOS_RUNTIME=faust``
runs the fleet on the Faust runtime), which also runs the short scenario on the Faust runtime.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.chaos._fleet import Fleet, Schedule, run_fleet

pytestmark = pytest.mark.integration


def kills(each: int, every_s: float) -> Schedule:
    """``each`` SIGKILLs and ``each`` SIGTERMs, alternating, one every ``every_s`` seconds."""

    async def schedule(fleet: Fleet, _stream_done: asyncio.Event) -> None:
        for n in range(2 * each):
            await asyncio.sleep(every_s)
            await fleet.replace(signal.SIGKILL if n % 2 == 0 else signal.SIGTERM)

    return schedule


@pytest.mark.timeout(900)
async def test_workers_killed_and_stopped_mid_stream_lose_and_repeat_nothing(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    report = await run_fleet(
        tmp_path, kafka_settings, codec, schema_registry, catalogue,
        total=2000, rate=80, workers=2, schedule=kills(each=2, every_s=5),
    )  # fmt: skip
    report.check()
    assert len(report.stopped) == 4


@pytest.mark.chaos
@pytest.mark.timeout(900)
async def test_faust_workers_killed_and_stopped_mid_stream_lose_and_repeat_nothing(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    """The short scenario on the Faust runtime (``make chaos``; ``make test`` runs the aiokafka
    one above, or the runtime ``BACKBONE_CHAOS_RUNTIME`` names)."""
    report = await run_fleet(
        tmp_path, kafka_settings, codec, schema_registry, catalogue,
        total=2000, rate=80, workers=2, schedule=kills(each=2, every_s=5), runtime="faust",
    )  # fmt: skip
    report.check()
    assert len(report.stopped) == 4


@pytest.mark.chaos
@pytest.mark.timeout(7200)
async def test_ten_kills_of_each_kind_during_100k_calls(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    total = int(os.environ.get("BACKBONE_CHAOS_CALLS", "100000"))
    report = await run_fleet(
        tmp_path, kafka_settings, codec, schema_registry, catalogue,
        total=total, rate=400, workers=2, schedule=kills(each=10, every_s=12),
    )  # fmt: skip
    report.check()
    assert len(report.stopped) == 20
