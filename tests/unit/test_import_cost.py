"""Faust where it belongs (issue 12, section 5) and the start-up cost of the CLI (issue 14, item 12).

Each check runs in a fresh interpreter, so what is imported is exactly what that entry point pulls
in. The assertions are on ``sys.modules`` (deterministic); the one timing bound is a generous
sanity limit, the real figure is in ``make bench`` (benchmarks/bench_cli.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from typing import TypedDict

from infra.cli._app import COMMANDS

HEAVY = ("faust", "mode", "aiokafka", "aiohttp", "fastavro", "pydantic")


class Probe(TypedDict):
    loaded: list[str]
    seconds: float


def _modules_after(code: str) -> Probe:
    probe = (
        "import sys, time, json\n"
        "start = time.perf_counter()\n"
        f"{code}\n"
        "elapsed = time.perf_counter() - start\n"
        f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], "
        "'seconds': elapsed}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: Probe = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_import_streams_loads_nothing_heavy_and_is_cheap() -> None:
    result = _modules_after("import streams")
    assert result["loaded"] == []
    assert result["seconds"] < 5.0  # sanity bound only; measured by `make bench`


def test_the_whole_sdk_never_imports_faust() -> None:
    names = "Publisher, Subscriber, Codec, RegistryClient, Catalogue, publish_sync, EVENT_TYPES"
    result = _modules_after(f"from streams import {names}\nimport streams.replay, streams.groups")
    assert "faust" not in result["loaded"]
    assert "mode" not in result["loaded"]
    assert "aiokafka" in result["loaded"]  # the probe does see imports


def test_backbone_help_imports_only_click() -> None:
    result = _modules_after(
        "from infra.cli import main\n"
        "try:\n    main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert result["loaded"] == []


def test_no_command_imports_faust() -> None:
    """Not even the agents' own commands: with the default runtime the agents run on aiokafka;
    Faust is imported only when ``runtime = "faust"`` is chosen."""
    result = _modules_after(
        "from infra.cli import main\n"
        "import infra.stack, infra.worker, agents.worker, agents.webhooks\n"
        f"for command in {sorted(COMMANDS)!r}:\n"
        "    try:\n        main([command, '--help'], standalone_mode=False)\n"
        "    except SystemExit:\n        pass"
    )
    assert "faust" not in result["loaded"]
    assert "mode" not in result["loaded"]
    assert "aiokafka" in result["loaded"]


def test_the_faust_runtime_still_imports_faust_when_chosen() -> None:
    result = _modules_after("from agents.app import create_app\nimport agents._faust_calls")
    assert "faust" in result["loaded"]


def test_reading_the_configuration_loads_no_client_library() -> None:
    """Every command reads the settings; the connector packages they live in import their
    servers and clients only on first use (issue 14, item 12)."""
    result = _modules_after("import infra.config\ninfra.config.load_settings({})")
    assert [m for m in result["loaded"] if m != "pydantic"] == []


def test_lazy_packages_still_export_their_names() -> None:
    result = _modules_after(
        "from connectors.gateway import build_gateway, GatewayService, SETTINGS, problem\n"
        "from agents.alerts import AlertService\n"
        "from connectors.webhooks import WebhookSender\n"
        "import connectors.gateway\n"
        "assert 'build_gateway' in dir(connectors.gateway)\n"
        "try:\n    connectors.gateway.nothing_of_that_name\n"
        "except AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')"
    )
    assert "aiohttp" in result["loaded"]


def test_backbone_version_names_our_version_and_imports_nothing_heavy() -> None:
    result = _modules_after(
        "from infra.cli import main\n"
        "try:\n    main(['version'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert result["loaded"] == []
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["backbone-streams", metadata.version("backbone-streams")]
