"""``POST /v1/calls`` on a real aiohttp server: 202, wait for the outcome, 504, 400; and
``GET /v1/calls/{call_id}`` through the real gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors.calls_api import calls_extension, parse_wait
from connectors.gateway import GatewayService, GatewaySettings, build_gateway
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._cli import backbone
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import TopicReader, running_worker, terminal, worker_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[str]:
    app = web.Application()
    calls_extension(kafka_settings, schema_registry, catalogue, max_wait_s=10)(app)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_post_call_accepted_waited_and_timed_out(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, api: str, runtime: str
) -> None:
    svc = ScriptedService("svc")
    slow = ScriptedService("slow", latency_s=3.0)
    settings = worker_settings(catalogue, runtime=runtime)
    async with (
        running_worker(kafka_settings, codec, catalogue, settings, {"svc": svc, "slow": slow}),
        aiohttp.ClientSession() as http,
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        body = {"service": "svc", "operation": "chat", "payload": {"q": "hi"}, "priority": "high"}
        async with http.post(f"{api}/v1/calls", json=body) as resp:
            assert resp.status == 202
            accepted = await resp.json()
        async with http.post(f"{api}/v1/calls?wait=10s", json=body) as resp:
            assert resp.status == 200
            waited = await resp.json()
        assert waited["status"] == "succeeded"
        assert waited["outcome"]["call_id"] == waited["call_id"]
        assert waited["outcome"]["service"] == "svc"
        async with http.post(
            f"{api}/v1/calls?wait=500ms", json={**body, "service": "slow"}
        ) as resp:
            assert resp.status == 504
            timed_out = await resp.json()
        assert timed_out["error"]["code"] == "wait_expired"
        assert timed_out["error"]["call_id"]
        ids = {accepted["call_id"], waited["call_id"], timed_out["error"]["call_id"]}
        await results.wait_for(lambda r: {e.call_id for e in terminal(r)} >= ids, timeout=20)


async def test_bad_requests_are_rejected_at_the_edge(api: str) -> None:
    async with aiohttp.ClientSession() as http:
        for data in (
            b"{not json",
            b'{"service": "x"}',
            b'{"service": "x", "operation": "y", "bogus": 1}',
        ):
            async with http.post(f"{api}/v1/calls", data=data) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "invalid_call"
        ok = {"service": "x", "operation": "y"}
        async with http.post(f"{api}/v1/calls?wait=soon", json=ok) as resp:
            assert resp.status == 400


async def test_through_the_real_gateway_with_its_tokens(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    env: dict[str, str],
) -> None:
    gateway_settings = GatewaySettings(port=0, tokens={"research": SecretStr("t0ken")})
    app = build_gateway(
        gateway_settings,
        kafka_settings,
        schema_registry,
        catalogue,
        extensions=[calls_extension(kafka_settings, schema_registry, catalogue)],
    )
    service = GatewayService(app, "127.0.0.1", 0)
    await service.start()
    svc = ScriptedService("svc")
    settings = worker_settings(catalogue)
    try:
        async with (
            running_worker(kafka_settings, codec, catalogue, settings, {"svc": svc}),
            aiohttp.ClientSession() as http,
        ):
            url = f"http://127.0.0.1:{service.bound_port}/v1/calls?wait=10s"
            body = {"service": "svc", "operation": "chat", "payload": {}}
            async with http.post(url, json=body) as resp:
                assert resp.status == 401  # the gateway's bearer tokens guard /v1/calls too
            auth = {"Authorization": "Bearer t0ken", "Idempotency-Key": "order-42"}
            async with http.post(url, json=body, headers=auth) as resp:
                assert resp.status == 200
                answer = await resp.json()
            base = f"http://127.0.0.1:{service.bound_port}"
            shown = f"{base}/v1/calls/{answer['call_id']}"
            async with http.get(shown) as resp:
                assert resp.status == 401
            async with http.get(shown, headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                state = await resp.json()
            async with http.get(f"{base}/v1/calls/no-such-call", headers=auth) as resp:
                assert resp.status == 404
                missing = await resp.json()
            async with http.get(f"{base}/v1/calls/{'x' * 201}", headers=auth) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "invalid_call_id"
            async with http.get(f"{base}/openapi.json", headers=auth) as resp:
                document = await resp.json()
        assert answer["status"] == "succeeded"
        assert answer["idempotency_key"] == "order-42"
        # the same state, in the same shape, as `backbone calls show --json`
        assert state["state"] == "succeeded"
        assert [h["event_type"] for h in state["history"]] == ["call.succeeded"]
        assert state["history"][0]["event"] == answer["outcome"]
        done = await backbone(env, "calls", "show", answer["call_id"], "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == state
        assert missing["error"]["code"] == "unknown_call"
        assert missing["error"]["call_id"] == "no-such-call"
        operation = document["paths"]["/v1/calls/{call_id}"]["get"]
        assert {"200", "404", "503"} <= set(operation["responses"])
    finally:
        await service.stop()


def test_parse_wait() -> None:
    assert parse_wait("30s", 60) == 30
    assert parse_wait("500ms", 60) == 0.5
    assert parse_wait("2m", 60) == 60
    assert parse_wait("5", 60) == 5
    assert parse_wait(None, 60) is None
    with pytest.raises(ValueError, match="wait"):
        parse_wait("later", 60)
