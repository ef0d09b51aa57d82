"""``backbone projections list | status | rebuild`` against the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infra.cli import main
from streams import Publisher
from streams.codec import Codec
from streams.projections import SqliteStore, store_path
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.projections._mixed import mixed_events

pytestmark = pytest.mark.integration


async def _cli(env: dict[str, str], *args: str) -> Result:
    """The CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def test_rebuild_then_status_shows_no_lag_and_list_names_the_store(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    codec: Codec,
    tmp_path: Path,
) -> None:
    config = tmp_path / "backbone.toml"
    config.write_text(f'[projections]\nstore_dir = "{tmp_path / "stores"}"\n')
    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_CONFIG": str(config),
    }
    events = mixed_events(300, seed=5)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(events)

    before = await _cli(env, "projections", "status", "--json")
    assert before.exit_code == 0, before.output
    assert sum(r["lag"] for r in json.loads(before.output)) == len(events)

    rebuilt = await _cli(env, "projections", "rebuild", "metrics", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    report = json.loads(rebuilt.stdout)
    assert report["records"] == len(events)
    assert report["applied"] == len(events)
    assert report["records_per_second"] > 0
    store = SqliteStore(store_path(tmp_path / "stores", "metrics"))
    try:
        assert any(key.startswith("w/") for _, key, _ in store.items())
    finally:
        store.close()

    after = await _cli(env, "projections", "status", "--json")
    assert after.exit_code == 0, after.output
    rows = json.loads(after.output)
    assert all(r["lag"] == 0 for r in rows), rows
    assert sum(r["checkpoint"] or 0 for r in rows) == len(events)

    listed = await _cli(env, "projections", "list", "--json")
    (metrics,) = json.loads(listed.output)
    assert metrics["store_exists"] is True
    assert (await _cli(env, "projections", "rebuild", "nope")).exit_code == 1
