"""Fixtures shared by the integration tests (the broker and registry come from the pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._cli import cli_env

#: folders of long fault scenarios: run first, so that under ``pytest -n 2 --dist loadfile`` no
#: worker starts one of them last while the other has already finished (``make test`` passes
#: ``--no-loadscope-reorder``: xdist would otherwise order files by their number of tests)
LONG_FIRST = ("chaos", "cluster", "outage")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def long_first(item: pytest.Item) -> int:
        return 0 if set(item.path.parts) & set(LONG_FIRST) else 1

    items.sort(key=long_first)  # stable: the order within each group is kept


@pytest.fixture
def env(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    tmp_path: Path,
) -> dict[str, str]:
    """The environment of a ``backbone`` command pointed at the test broker, registry and topics."""
    return cli_env(kafka_settings, schema_registry, catalogue, tmp_path)
