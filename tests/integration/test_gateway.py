"""The HTTP gateway against the real broker and registry: every status code it promises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from connectors.gateway import (
    CLIENT_ID,
    PUBLISHER,
    Extension,
    GatewaySettings,
    build_gateway,
)
from infra.kafka.broker import BrokerOptions, LocalBroker
from streams import Subscriber
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json

pytestmark = pytest.mark.integration

TOKENS = {"alpha": "token-alpha", "beta": "token-beta"}
AUTH = {"Authorization": "Bearer token-alpha"}
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def gateway(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(
        kafka: KafkaSettings | None = None, extensions: Sequence[Extension] = (), **overrides: Any
    ) -> Client:
        settings = GatewaySettings(tokens=TOKENS, **overrides)
        app = build_gateway(
            settings, kafka or kafka_settings, schema_registry, catalogue, extensions=extensions
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


async def _error(response: ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    return body["error"]  # type: ignore[no-any-return]


async def _events_in(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, topic: str = "calls.requests"
) -> dict[str, tuple[str, int, int]]:
    async with Subscriber(kafka, codec, catalogue, [topic], None, stop_at_end=True) as sub:
        return {str(r.event.event_id): (r.topic, r.partition, r.offset) async for r in sub}


async def test_202_only_with_the_coordinates_of_an_acknowledged_record(
    gateway: MakeClient, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    client = await gateway()
    response = await client.post(
        "/v1/events/call.requested", json=call_requested_json(1), headers=AUTH
    )
    assert response.status == 202, await response.text()
    body = await response.json()
    assert set(body) == {"event_id", "topic", "partition", "offset"}
    written = await _events_in(kafka_settings, codec, catalogue)
    assert written[body["event_id"]] == (body["topic"], body["partition"], body["offset"])


async def test_400_names_the_invalid_fields(gateway: MakeClient) -> None:
    client = await gateway()
    data = call_requested_json(1)
    del data["service"]
    data["attempt"] = "many"
    data["surprise"] = 1
    response = await client.post("/v1/events/call.requested", json=data, headers=AUTH)
    assert response.status == 400
    error = await _error(response)
    assert error["code"] == "invalid_event"
    assert {f["field"] for f in error["fields"]} == {"service", "attempt", "surprise"}
    bad_json = await client.post(
        "/v1/events/call.requested",
        data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert bad_json.status == 400
    assert (await _error(bad_json))["code"] == "invalid_json"


async def test_404_for_an_unknown_event_type(gateway: MakeClient) -> None:
    client = await gateway()
    response = await client.post("/v1/events/no.such_type", json={}, headers=AUTH)
    assert response.status == 404
    assert (await _error(response))["code"] == "unknown_event_type"


async def test_413_from_the_declared_length_and_while_streaming(gateway: MakeClient) -> None:
    client = await gateway(max_body_bytes=1_000)
    big = json.dumps({**call_requested_json(1), "payload": "x" * 5_000}).encode()
    declared = await client.post(
        "/v1/events/call.requested",
        data=big,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert declared.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    streamed = await client.post(
        "/v1/events/call.requested",
        data=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert streamed.status == 413
    assert (await _error(streamed))["code"] == "body_too_large"


async def test_415_for_a_wrong_content_type(gateway: MakeClient) -> None:
    client = await gateway()
    response = await client.post(
        "/v1/events/call.requested",
        data=json.dumps(call_requested_json(1)),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert response.status == 415
    batch = await client.post(
        "/v1/events/call.requested:batch", json=call_requested_json(1), headers=AUTH
    )
    assert batch.status == 415


async def test_401_without_a_valid_bearer_token(gateway: MakeClient) -> None:
    client = await gateway()
    url = "/v1/events/call.requested"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic token-alpha"}):
        response = await client.post(url, json=call_requested_json(1), headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/healthz")).status == 200  # probes are public


async def test_429_with_retry_after_per_client(gateway: MakeClient) -> None:
    client = await gateway(rate_per_s=0.05, burst=2)  # one token per 20 s: no refill mid-test
    url = "/v1/events/call.requested"
    statuses = [
        (await client.post(url, json=call_requested_json(i), headers=AUTH)).status for i in range(2)
    ]
    assert statuses == [202, 202]
    limited = await client.post(url, json=call_requested_json(3), headers=AUTH)
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    other = await client.post(
        url, json=call_requested_json(4), headers={"Authorization": "Bearer token-beta"}
    )
    assert other.status == 202  # buckets are per client


async def test_batch_reports_per_line(
    gateway: MakeClient, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    client = await gateway()
    bad = {**call_requested_json(2), "attempt": "x"}
    lines = [
        json.dumps(call_requested_json(1)),
        json.dumps(bad),
        "",
        "{oops",
        json.dumps(call_requested_json(5)),
    ]
    response = await client.post(
        "/v1/events/call.requested:batch",
        data="\n".join(lines).encode(),
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert response.status == 207
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    by_line = {r["line"]: r for r in body["results"]}
    assert [by_line[n]["status"] for n in (1, 2, 4, 5)] == [202, 400, 400, 202]
    assert by_line[2]["fields"][0]["field"] == "attempt"
    written = await _events_in(kafka_settings, codec, catalogue)
    for n in (1, 5):
        r = by_line[n]
        assert written[r["event_id"]] == (r["topic"], r["partition"], r["offset"])
    assert len(written) == 2

    every = "\n".join(json.dumps(call_requested_json(i)) for i in range(10)).encode()
    all_ok = await client.post(
        "/v1/events/call.requested:batch",
        data=every,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert all_ok.status == 202
    assert (await all_ok.json())["accepted"] == 10


async def test_openapi_is_generated_from_the_models(gateway: MakeClient) -> None:
    client = await gateway()
    doc = await (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/events/call.requested"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"call_id", "service", "event_id"} <= set(schema["properties"])
    assert "service" in schema["required"]
    assert {"202", "400", "401", "404", "413", "415", "429", "503"} <= set(op["responses"])
    assert "/v1/events/call.requested:batch" in doc["paths"]


async def test_health_and_readiness(gateway: MakeClient) -> None:
    client = await gateway()
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert {c["name"] for c in body["checks"]} >= {"kafka", "registry", "publisher"}


async def test_503_and_nothing_claimed_when_the_broker_is_gone(
    gateway: MakeClient, catalogue: Catalogue
) -> None:
    broker = LocalBroker(BrokerOptions(quick_start=True))
    await asyncio.to_thread(broker.start)
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, request_timeout_ms=3_000, linger_ms=0)
        # the catalogue with the default request timeout: 3 s is the gateway's budget, and a
        # CreateTopics of the whole catalogue on a loaded, just started broker can take longer
        # (its RequestTimedOutError escaped apply_catalogue untranslated, now a retriable error)
        await apply_catalogue(KafkaSettings(bootstrap=broker.bootstrap), catalogue)
        client = await gateway(kafka, publish_timeout_s=2.0, readiness_timeout_s=1.0)
        url = "/v1/events/call.requested"
        # warm-up: a loaded machine may need more than one 2 s window for the producer's first
        # metadata, producer id, partition leaders and schema registration on a broker that just
        # started: a 503, or a 504 when a produce request was still unanswered at the deadline
        for attempt in range(10):
            before = await client.post(url, json=call_requested_json(1), headers=AUTH)
            if before.status not in (503, 504):
                break
            await asyncio.sleep(0.5 * attempt)
        assert before.status == 202
        await asyncio.to_thread(broker.stop)
        after = await client.post(url, json=call_requested_json(2), headers=AUTH)
        assert after.status == 503
        assert after.headers["Retry-After"]
        body = await after.json()
        assert "offset" not in json.dumps(body)
        assert body["error"]["code"] == "kafka_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
        checks = {c["name"]: c["ok"] for c in (await ready.json())["checks"]}
        assert checks["kafka"] is False
    finally:
        await asyncio.to_thread(broker.stop)


async def test_413_before_the_body_is_sent_with_expect_100_continue(gateway: MakeClient) -> None:
    """A client that asks first (``Expect: 100-continue``) is refused without sending a byte."""
    client = await gateway(max_body_bytes=1_000)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /v1/events/call.requested HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer token-alpha\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line


async def test_extensions_add_routes_behind_the_same_auth(gateway: MakeClient) -> None:
    async def whoami(request: web.Request) -> web.Response:
        started = request.app[PUBLISHER].catalogue is not None
        return web.json_response({"client": request[CLIENT_ID], "publisher": started})

    async def hook(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def extension(app: web.Application) -> None:
        app.router.add_get("/v1/whoami", whoami)
        app.router.add_post("/webhooks/test", hook)

    client = await gateway(extensions=[extension])
    assert (await client.get("/v1/whoami")).status == 401
    mine = await client.get("/v1/whoami", headers=AUTH)
    assert await mine.json() == {"client": "alpha", "publisher": True}
    assert (await client.post("/webhooks/test")).status == 200  # signatures, not bearer tokens
