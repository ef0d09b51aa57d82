"""Fixtures of the cluster tests: a schema registry stored on the cluster itself, and its codec."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from infra.kafka.cluster import LocalCluster
from infra.registry import RegistryServer
from infra.testing._background import BackgroundService
from infra.testing.pytest_plugin import unique
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings


@pytest.fixture(scope="session")
def cluster_registry(_local_cluster: LocalCluster) -> Iterator[RegistrySettings]:
    kafka = KafkaSettings(bootstrap=_local_cluster.bootstrap, client_id="backbone-tests")
    server = RegistryServer(kafka, topic=f"{unique('registry')}._schemas", port=0)
    background = BackgroundService(server)
    try:
        background.start()
    except Exception as exc:
        pytest.fail(f"could not start the schema registry on the cluster: {exc!r}")
    try:
        yield RegistrySettings(url=server.url)
    finally:
        background.stop()


@pytest.fixture
async def cluster_codec(cluster_registry: RegistrySettings) -> AsyncIterator[Codec]:
    async with RegistryClient(cluster_registry) as client:
        yield Codec(client)
