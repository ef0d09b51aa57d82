"""A crashing plugin costs one attempt, never the worker; its lifecycle is on plugins.lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from connectors import ServiceSettings
from connectors.plugins import PluginConnector
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls import _support
from tests.integration.calls._support import TopicReader, publish, request, running_worker, terminal

pytestmark = pytest.mark.integration

PLUGIN = """
import os

MANIFEST = {"name": "flaky", "version": "0.1.0", "capabilities": ["echo"]}

def execute(operation, payload):
    marker = payload.get("crash_once")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)  # dies mid-call, like a segfault would
    return {"echo": payload}
"""


async def test_plugin_crash_is_isolated_and_recorded(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    source = tmp_path / "flaky.py"
    source.write_text(PLUGIN)
    conn = PluginConnector(
        ServiceSettings(
            name="flaky", kind="plugin", options={"path": str(source), "timeout_s": "2"}
        )
    )
    req = request("flaky", payload=json.dumps({"crash_once": str(tmp_path / "crashed")}))
    ok = request("flaky")
    await publish(kafka_settings, codec, catalogue, [req, ok])
    settings = _support.worker_settings(catalogue, delays_s=(0.2, 0.2, 0.2))
    async with (
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
        running_worker(kafka_settings, codec, catalogue, settings, {"flaky": conn}),
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 2)
    succeeded = {e.call_id: e for e in results.of("call.succeeded")}
    assert set(succeeded) == {req.call_id, ok.call_id}
    assert succeeded[req.call_id].attempt == 1  # the crash cost exactly one attempt
    [failed] = results.of("call.failed")
    assert failed.error_class == "PluginCrashedError"
    async with TopicReader(kafka_settings, codec, catalogue.name("plugins.lifecycle")) as lifecycle:
        await lifecycle.wait_for(lambda r: len(r.events) >= 3)
    assert [e.event_type for e in lifecycle.events] == [
        "plugin.loaded",
        "plugin.failed",
        "plugin.unloaded",
    ]


async def test_plugins_cli_install_list_remove(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    schema_registry: RegistrySettings,
    tmp_path: Path,
) -> None:
    source = tmp_path / "flaky_src.py"
    source.write_text(PLUGIN)
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_STATE_DIR": str(tmp_path / "state"),
    }

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "infra.cli",
            "plugins",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    assert "installed flaky 0.1.0" in await cli("install", str(source))
    listed = json.loads(await cli("list", "--json"))
    assert [p["name"] for p in listed["plugins"]] == ["flaky"]
    assert "removed flaky" in await cli("remove", "flaky")
    assert json.loads(await cli("list", "--json"))["plugins"] == []
    async with TopicReader(kafka_settings, codec, catalogue.name("plugins.lifecycle")) as lifecycle:
        await lifecycle.wait_for(lambda r: len(r.events) >= 2)
    assert [e.event_type for e in lifecycle.events] == ["plugin.installed", "plugin.unloaded"]
