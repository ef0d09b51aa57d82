"""``backbone projections list | status | rebuild | run`` against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infra.cli import main
from streams import Publisher
from streams.codec import Codec
from streams.projections import SqliteStore, store_path
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.chaos._kit import start_process, stop_process
from tests.integration.projections._mixed import mixed_events, recount
from tests.integration.projections._support import windows

pytestmark = pytest.mark.integration


def _env(
    kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue, config: Path
) -> dict[str, str]:
    """What the CLI needs to reach this test's broker, registry, topics and config file."""
    return {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_CONFIG": str(config),
    }


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
    env = _env(kafka_settings, schema_registry, catalogue, config)
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


async def test_run_keeps_the_projection_up_to_date_and_stops_on_sigterm(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    codec: Codec,
    tmp_path: Path,
) -> None:
    config = tmp_path / "backbone.toml"
    # disabled for `backbone up` only: `projections run` runs them regardless
    config.write_text(f'[projections]\nstore_dir = "{tmp_path / "stores"}"\nenabled = false\n')
    env = {
        **os.environ,
        "BACKBONE_STATE_DIR": str(tmp_path),
        **_env(kafka_settings, schema_registry, catalogue, config),
    }
    events = mixed_events(300, seed=7)
    calls = sum(recount(events).calls.values())
    log = tmp_path / "projections.log"
    proc = await start_process(["projections", "run"], env, log)
    try:
        async with Publisher(kafka_settings, codec, catalogue) as publisher:
            await publisher.publish_many(events)
        counted = [0]

        async def all_counted() -> bool:
            counted[0] = sum(w.calls for w in await windows(kafka_settings, codec, catalogue))
            return counted[0] == calls

        for _ in range(180):  # the events are an hour old: the idle flush closes their windows
            assert proc.returncode is None, log.read_text()
            if await all_counted():
                break
            await asyncio.sleep(1)
        assert counted[0] == calls, log.read_text()
    finally:
        code = await stop_process(proc)
    assert code == 0, log.read_text()
    status = await _cli(env, "projections", "status", "--json")
    rows = json.loads(status.output)
    assert sum(r["checkpoint"] or 0 for r in rows) == len(events), rows
