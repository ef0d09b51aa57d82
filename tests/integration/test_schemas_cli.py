from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from infra.cli import main
from infra.testing.pytest_plugin import unique
from streams.events import EVENT_TYPES
from streams.registry_client import RegistryClient, SchemaVersion
from streams.settings import RegistrySettings
from streams.topics import TOPICS

pytestmark = pytest.mark.integration


def test_register_puts_every_event_type_under_its_topics_subjects(
    schema_registry: RegistrySettings,
) -> None:
    prefix = unique("reg") + "."
    env = {"BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url, "BACKBONE_TOPIC_PREFIX": prefix}
    runner = CliRunner()
    first = runner.invoke(main, ["schemas", "register", "--json"], env=env)
    assert first.exit_code == 0, first.output
    ids = json.loads(first.output)
    expected = {
        f"{prefix}{spec.name}-{EVENT_TYPES[t].fullname()}"
        for spec in TOPICS
        for t in spec.value_types
    }
    assert set(ids) == expected
    assert len(set(ids.values())) == len(EVENT_TYPES)  # one id per event type, shared by topics
    again = runner.invoke(main, ["schemas", "register", "--json"], env=env)
    assert json.loads(again.output) == ids
    subject = f"{prefix}calls.results-io.backbone.calls.CallSucceeded"
    latest = asyncio.run(_latest(schema_registry, subject))
    assert latest.id == ids[subject]
    assert json.loads(latest.schema) == EVENT_TYPES["call.succeeded"].avro_schema()


async def _latest(registry: RegistrySettings, subject: str) -> SchemaVersion:
    async with RegistryClient(registry) as client:
        return await client.version(subject)
