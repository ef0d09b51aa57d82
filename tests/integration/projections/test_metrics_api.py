"""The gateway's metrics endpoints, and ``GET /metrics`` scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.gateway import GatewaySettings, build_gateway
from connectors.metrics_api import metrics_extension
from infra.testing.system import require_program
from streams import Publisher
from streams.codec import Codec
from streams.events.monitoring import MetricsWindow
from streams.rollup import rollup, sketch_record
from streams.settings import KafkaSettings, RegistrySettings
from streams.sketch import Sketch
from streams.topics import Catalogue

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer token-alpha"}
Client = TestClient[web.Request, web.Application]


@functools.cache
def produced() -> list[MetricsWindow]:
    """Ten minutes of windows for two services, half an hour ago (the same list every call)."""
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    out = []
    for minute in range(10):
        for service, calls, failures in (("llm", 20 + minute, minute % 3), ("geo", 5, 1)):
            latencies = [float(10 + 7 * i + minute) for i in range(calls)]
            out.append(
                MetricsWindow(
                    service=service,
                    window_start=base + timedelta(minutes=minute),
                    window_end=base + timedelta(minutes=minute + 1),
                    calls=calls,
                    successes=calls - failures,
                    failures=failures,
                    failures_by_error_class={"Timeout": failures} if failures else {},
                    throughput_per_second=calls / 60,
                    error_rate=failures / calls,
                    cost_usd=0.01 * calls,
                    cost_by_model={"gpt-x": 0.01 * calls},
                    tokens_prompt=3 * calls,
                    latency_sketch=sketch_record(Sketch.of(latencies)),
                    health_checks=2,
                    health_checks_up=2,
                )
            )
    return out


@pytest.fixture
async def client(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    codec: Codec,
) -> AsyncIterator[Client]:
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(produced())
    app = build_gateway(
        GatewaySettings(tokens={"alpha": "token-alpha"}),
        kafka_settings,
        schema_registry,
        catalogue,
        extensions=[metrics_extension(kafka_settings, catalogue)],
    )
    test_client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


async def poll_json(client: Client, path: str, ready: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(path, headers=AUTH)
        body: dict[str, Any] = await response.json()
        if response.status == 200 and ready(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {response.status} {body}")
        await asyncio.sleep(0.5)


async def test_integrations_endpoints_roll_up_the_windows_with_window_and_freshness(
    client: Client,
) -> None:
    windows = produced()
    expected = rollup(windows, windows[-1].window_end - timedelta(hours=1), windows[-1].window_end)
    body = await poll_json(
        client,
        "/v1/metrics/integrations?window=1h",
        lambda b: sum(s["calls"] for s in b["services"]) == sum(w.calls for w in windows),
    )
    assert body["window"] == "1h"
    assert body["end"] == windows[-1].window_end.isoformat()
    assert body["freshness"]["latest_window_end"] == windows[-1].window_end.isoformat()
    assert body["freshness"]["age_seconds"] >= 19 * 60  # the last window ended 20 minutes ago
    by_service = {s["service"]: s for s in body["services"]}
    assert by_service == {name: f.to_json() for name, f in expected.items()}

    five = await poll_json(client, "/v1/metrics/integrations?window=5m", lambda b: True)
    assert {s["service"]: s["calls"] for s in five["services"]} == {
        "llm": sum(20 + m for m in range(5, 10)),
        "geo": 25,
    }

    one = await poll_json(client, "/v1/metrics/integrations/llm?window=1h", lambda b: True)
    assert one["service"]["calls"] == sum(20 + m for m in range(10))
    assert [m["calls"] for m in one["series"]] == [20 + m for m in range(10)]

    bad = await client.get("/v1/metrics/integrations?window=7m", headers=AUTH)
    assert bad.status == 400
    assert (await bad.json())["error"]["choices"] == ["1m", "5m", "15m", "1h", "24h"]
    unknown = await client.get("/v1/metrics/integrations/nope", headers=AUTH)
    assert unknown.status == 404
    assert "nope" in (await unknown.json())["error"]["message"]
    assert (await client.get("/v1/metrics/integrations")).status == 401

    document = await (await client.get("/openapi.json")).json()
    assert "/v1/metrics/integrations/{service}" in document["paths"]
    assert "/metrics" in document["paths"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_prometheus_scrapes_our_series_and_promql_returns_what_we_produced(
    client: Client, tmp_path: Path
) -> None:
    prometheus = require_program("prometheus")
    promtool = require_program("promtool")
    windows = produced()
    await poll_json(
        client,
        "/v1/metrics/integrations?window=24h",
        lambda b: sum(s["calls"] for s in b["services"]) == sum(w.calls for w in windows),
    )
    scrape = await (await client.get("/metrics")).text()
    lint = await asyncio.to_thread(promtool_check, promtool, scrape)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    port = free_port()
    target = f"127.0.0.1:{client.server.port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: backbone\n    static_configs:\n      - targets: ['{target}']\n"
    )
    process, log = start_prometheus(prometheus, config, tmp_path, port)
    try:
        query = 'sum by (service) (backbone_integration_calls_total{job="backbone"})'
        found = await promql(port, query, lambda r: len(r) == 2)
        got = {r["metric"]["service"]: float(r["value"][1]) for r in found}
        assert got == {
            "llm": float(sum(w.calls for w in windows if w.service == "llm")),
            "geo": float(sum(w.calls for w in windows if w.service == "geo")),
        }
        failures = await promql(
            port, 'backbone_integration_calls_total{outcome="failure",service="geo"}', bool
        )
        assert float(failures[0]["value"][1]) == 10.0
        counts = await promql(
            port, "backbone_integration_call_duration_seconds_count", lambda r: len(r) == 2
        )
        assert {r["metric"]["service"]: float(r["value"][1]) for r in counts} == got
    finally:
        await asyncio.to_thread(stop, process)
        log.close()


def promtool_check(promtool: str, scrape: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )


def start_prometheus(
    prometheus: str, config: Path, tmp_path: Path, port: int
) -> tuple[subprocess.Popen[bytes], IO[str]]:
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return process, log


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def promql(port: int, query: str, ready: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 90
    last: Any = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(
                    f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}
                ) as answer:
                    last = await answer.json()
                    result: list[dict[str, Any]] = last["data"]["result"]
                    if last["status"] == "success" and ready(result):
                        return result
            except (aiohttp.ClientError, KeyError, json.JSONDecodeError) as exc:
                last = exc
            await asyncio.sleep(1)
    raise AssertionError(f"Prometheus never answered {query!r} as expected; last: {last}")
