"""Periodic health checks per connector become ``integration.health_checked`` events."""

from __future__ import annotations

import pytest

from streams.codec import Codec
from streams.events.health import HealthChecked, HealthStatus
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import TopicReader, running_worker, worker_settings

pytestmark = pytest.mark.integration


def checks(reader: TopicReader, status: HealthStatus) -> list[HealthChecked]:
    return [e for e in reader.events if isinstance(e, HealthChecked) and e.status is status]


async def test_health_checks_are_periodic_events(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    settings = worker_settings(catalogue, health_interval_s=0.2)
    async with (
        running_worker(kafka_settings, codec, catalogue, settings, {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("integration.health")) as health,
    ):
        await health.wait_for(lambda r: len(checks(r, HealthStatus.HEALTHY)) >= 3, timeout=20)
        svc.broken = True
        await health.wait_for(lambda r: len(checks(r, HealthStatus.UNHEALTHY)) >= 1, timeout=20)
    healthy = checks(health, HealthStatus.HEALTHY)
    assert {e.service for e in healthy} == {"svc"}
    assert all(e.latency_ms is not None for e in healthy)
