"""Fixtures shared by the integration tests (the broker and registry come from the pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._cli import cli_env


@pytest.fixture
def env(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    tmp_path: Path,
) -> dict[str, str]:
    """The environment of a ``backbone`` command pointed at the test broker, registry and topics."""
    return cli_env(kafka_settings, schema_registry, catalogue, tmp_path)
