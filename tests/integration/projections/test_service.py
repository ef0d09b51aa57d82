"""The projection service supervises its runners: readiness says whether each projection is
up to date, a runner that cannot reach Kafka is shown failing and retried (never left dead), and
stopping always completes, with or without a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.projections import ProjectionService, ProjectionSettings
from infra.kafka.broker import free_port
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.outage._broker import eventually

pytestmark = pytest.mark.integration


async def test_the_service_reports_ready_once_its_projection_runs(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    tmp_path: Path,
) -> None:
    await apply_catalogue(kafka_settings, catalogue)
    service = ProjectionService(
        kafka_settings, schema_registry, catalogue, ProjectionSettings(store_dir=tmp_path)
    )
    await service.start()
    try:
        assert service.problems(), "ready before any runner started"

        async def ready() -> bool:
            return not service.problems()

        await eventually(ready, timeout_s=120)
        assert {h["state"] for h in service.health().values()} == {"running"}
    finally:
        async with asyncio.timeout(60):
            await service.stop()


async def test_a_runner_without_kafka_is_shown_failing_retried_and_stopped(
    schema_registry: RegistrySettings, catalogue: Catalogue, tmp_path: Path
) -> None:
    nowhere = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", request_timeout_ms=2_000)
    service = ProjectionService(
        nowhere, schema_registry, catalogue, ProjectionSettings(store_dir=tmp_path)
    )
    await service.start()
    try:

        async def retried() -> bool:
            (name,) = service.supervised
            return service.supervised[name].runs >= 2 and name in service.problems()

        await eventually(retried, timeout_s=120)
        problem = next(iter(service.problems().values()))
        assert "Kafka" in problem or "kafka" in problem.lower(), problem
    finally:
        async with asyncio.timeout(60):  # shutdown completes without a cluster
            await service.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("projections:")]
