"""Schemathesis against the live gateway (every route, real broker and registry).

The gateway runs with all the extensions ``backbone up`` installs (``/v1/calls``,
``/v1/webhook-endpoints``, ``/webhooks/{source}``, ``/ws`` and the dashboard, ``/v1/research``,
``/v1/metrics/integrations``) in this test's event loop; schemathesis runs as a separate process (its
CLI) over ``/openapi.json`` with every default check on and a bounded number of examples per
operation. ``BACKBONE_SCHEMATHESIS_EXAMPLES`` and ``BACKBONE_SCHEMATHESIS_SEED`` change the bound
and the seed (a failing run prints its seed).

The default phases (examples, fuzzing, stateful) keep the run near a minute on a shared machine.
Schemathesis's coverage phase (boundary values of every keyword, about 1,900 more requests, two to
three minutes here) is added with ``BACKBONE_SCHEMATHESIS_PHASES=examples,coverage,fuzzing,stateful``.
It is not part of ``make test``: its last run found one more case (a URL host with ``*``, now
refused); the document's URL pattern is also stricter than what the API accepts (upper case is
normalised, not refused), which its negative cases may still report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from agents.research import research_extension
from connectors.calls_api import calls_extension
from connectors.gateway import GatewayService, GatewaySettings, build_gateway
from connectors.gateway._openapi import installed_routes
from connectors.metrics_api import metrics_extension
from connectors.realtime import RealtimeSettings, realtime_extension
from connectors.webhooks.gateway import webhooks_extension
from connectors.webhooks.settings import (
    DeliverySettings,
    InboundSource,
    IngressSettings,
    WebhookSettings,
)
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

pytestmark = pytest.mark.integration

TOKEN = "contract-token"
ROOT = Path(__file__).resolve().parents[2]


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "schemathesis is not installed: run `.venv/bin/uv pip install --python "
            ".venv/bin/python -e '.[dev]'` (it is a dev dependency)"
        )
    return found


@pytest.fixture
async def live_gateway(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    tmp_path: Path,
) -> AsyncIterator[tuple[str, web.Application]]:
    webhooks = WebhookSettings(
        ingress=IngressSettings(
            sources={"partner": InboundSource(secrets=(SecretStr("whsec_" + "A" * 32),))}
        ),
        # registration judges literal addresses; the contract run may generate any of them
        delivery=DeliverySettings(allow_networks=("0.0.0.0/0", "::/0")),
    )
    app = build_gateway(
        GatewaySettings(tokens={"contract": SecretStr(TOKEN)}, rate_per_s=10_000, burst=10_000),
        kafka_settings,
        schema_registry,
        catalogue,
        extensions=[
            calls_extension(
                kafka_settings, schema_registry, catalogue, max_wait_s=0.5, services=["search"]
            ),
            webhooks_extension(kafka_settings, schema_registry, catalogue, webhooks),
            realtime_extension(RealtimeSettings(jwt_key=SecretStr("k" * 32))),
            research_extension(kafka_settings, catalogue, tmp_path / "projections"),
            metrics_extension(kafka_settings, catalogue),
        ],
    )
    service = GatewayService(app, "127.0.0.1", 0)
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.bound_port}", app
    finally:
        await service.stop()


async def test_every_route_the_gateway_serves_is_in_its_openapi_document(
    live_gateway: tuple[str, web.Application],
) -> None:
    base, app = live_gateway
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}) as answer,
    ):
        document = await answer.json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (method, path)
        for method, path in installed_routes(app)
        if method not in ("HEAD", "OPTIONS") and not path.startswith("/static")
    }
    # the event routes are documented per event type, not as the one templated route
    served = {(m, p) for m, p in served if not p.startswith("/v1/events/")}
    assert served <= documented, sorted(served - documented)
    for path in (
        "/ws",
        "/v1/research",
        "/v1/metrics/integrations/{service}",
        "/v1/calls/{call_id}",
    ):
        assert path in document["paths"]


async def test_schemathesis_finds_no_failure_on_the_live_gateway(
    live_gateway: tuple[str, web.Application], tmp_path: Path
) -> None:
    base, _ = live_gateway
    examples = os.environ.get("BACKBONE_SCHEMATHESIS_EXAMPLES", "6")
    phases = os.environ.get("BACKBONE_SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")
    seed = os.environ.get("BACKBONE_SCHEMATHESIS_SEED", "20261130")
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration._schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        _schemathesis(),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        examples,
        "--phases",
        phases,
        "--seed",
        seed,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its working directory
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode(errors="replace")
    if report := os.environ.get("BACKBONE_SCHEMATHESIS_REPORT"):
        await asyncio.to_thread(Path(report).write_text, text)
    assert process.returncode == 0, text[-12_000:]
    assert "No issues found" in text or "passed" in text, text[-4_000:]
