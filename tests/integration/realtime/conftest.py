"""Fixtures for the websocket tests: a publisher on a fresh catalogue, a running gateway."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from connectors.gateway import GatewayService
from connectors.realtime.channels import fanout_topics
from infra.testing.pytest_plugin import unique
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.realtime._kit import running_gateway


@pytest.fixture
async def catalogue(kafka_settings: KafkaSettings) -> Catalogue:
    """Only the topics the fan-out reads, with 3 partitions each: a fresh set per test, created
    quickly (the full catalogue is exercised by the browser test)."""
    wanted = set(fanout_topics())
    specs = tuple(
        dataclasses.replace(spec, partitions=min(spec.partitions, 3))
        for spec in Catalogue()
        if spec.name in wanted
    )
    cat = Catalogue(prefix=unique("ws") + ".", specs=specs)
    await apply_catalogue(kafka_settings, cat)
    return cat


@pytest.fixture
async def publisher(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> AsyncIterator[Publisher]:
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        yield publisher


@pytest.fixture
async def gateway(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[GatewayService]:
    async with running_gateway(kafka_settings, schema_registry, catalogue) as service:
        yield service
