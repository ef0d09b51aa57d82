"""Plugins run in their own process: crashes, hangs and memory hogs cost a call, not the worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors import CallInput, ServiceSettings
from connectors.errors import ProviderTimeoutError
from connectors.plugins import (
    Limits,
    PluginCallError,
    PluginConnector,
    PluginCrashedError,
    PluginInvalidError,
    PluginProcess,
    install,
    installed,
    remove,
    validate,
)
from streams.events.plugins import PluginFailed, PluginLoaded, PluginUnloaded

PLUGIN = """
MANIFEST = {"name": "demo", "version": "1.2.0", "capabilities": ["echo"]}

def execute(operation, payload):
    if payload.get("crash"):
        import os
        os._exit(3)
    if payload.get("hang"):
        import time
        time.sleep(60)
    if payload.get("hog"):
        blob = bytearray(1024 * 1024 * 1024)
        return {"size": len(blob)}
    if payload.get("raise"):
        raise ValueError("bad input")
    return {"op": operation, "echo": payload}
"""


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "demo_src.py"
    path.write_text(PLUGIN)
    return path


async def test_calls_and_crash_isolation(plugin_file: Path) -> None:
    process = PluginProcess(plugin_file, Limits(timeout_s=1.0, memory_mb=256))
    try:
        assert (await process.start())["name"] == "demo"
        assert await process.call("echo", {"a": 1}) == {"op": "echo", "echo": {"a": 1}}
        with pytest.raises(PluginCrashedError) as crashed:
            await process.call("echo", {"crash": True})
        assert crashed.value.retriable
        assert await process.call("echo", {"b": 2}) == {"op": "echo", "echo": {"b": 2}}
        began = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await process.call("echo", {"hang": True})
        assert time.monotonic() - began < 3
        with pytest.raises((PluginCallError, PluginCrashedError)):  # MemoryError under RLIMIT_AS
            await process.call("echo", {"hog": True})
        with pytest.raises(PluginCallError) as raised:
            await process.call("echo", {"raise": True})
        assert not raised.value.retriable
        assert "bad input" in str(raised.value)
        assert await process.call("echo", {}) == {"op": "echo", "echo": {}}
        assert process.crashes >= 2
    finally:
        await process.stop()


async def test_invalid_plugin_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def execute(operation, payload):\n    return {}\n")
    with pytest.raises(PluginInvalidError, match="MANIFEST"):
        await validate(bad)
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit(1)\n")
    with pytest.raises((PluginInvalidError, PluginCrashedError)):
        await validate(broken)


async def test_install_list_remove(plugin_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    done = await install(plugin_file, folder)
    assert (done.name, done.version, done.capabilities) == ("demo", "1.2.0", ("echo",))
    [listed] = await installed(folder)
    assert listed == done
    assert remove("demo", folder)
    assert not remove("demo", folder)
    assert await installed(folder) == []


async def test_plugin_connector_reports_its_lifecycle(plugin_file: Path) -> None:
    conn = PluginConnector(
        ServiceSettings(
            name="demo-svc", kind="plugin", options={"path": str(plugin_file), "timeout_s": "1"}
        )
    )
    seen: list[object] = []
    conn.bind_events(seen.append)
    await conn.start()
    out = await conn.execute(CallInput("c1", "echo", {"x": 1}, "k1"))
    assert '"x": 1' in out.body
    with pytest.raises(PluginCrashedError):
        await conn.execute(CallInput("c2", "echo", {"crash": True}, "k2"))
    await conn.stop()
    assert len(seen) == 3, seen
    loaded, failed, unloaded = seen
    assert isinstance(loaded, PluginLoaded)
    assert loaded.connectors == ["demo-svc"]
    assert isinstance(failed, PluginFailed)
    assert failed.stage.value == "run"
    assert isinstance(unloaded, PluginUnloaded)


async def test_a_crashing_plugin_error_names_the_cause(tmp_path: Path) -> None:
    """Issue 14 item 10: the plugin's own last stderr line (its exception) is in the error."""
    from connectors.plugins.process import PluginCrashedError, PluginProcess

    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import nope_module_xyz\n")
    process = PluginProcess(broken)
    with pytest.raises(PluginCrashedError) as info:
        await process.start()
    assert str(info.value) == (
        "plugin broken_plugin exited (crashed or hit a limit): "
        "ModuleNotFoundError: No module named 'nope_module_xyz'"
    )
    assert not process.running
