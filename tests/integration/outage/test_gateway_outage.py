"""The gateway across broker outages: it starts without Kafka, answers 503 (never 422) while
Kafka is away, becomes ready by itself, and a 503 is never written later (issue 10 item 7)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.calls_api import calls_extension
from connectors.gateway import GatewaySettings, build_gateway
from connectors.webhooks import signed_headers
from infra.kafka.broker import free_port
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.events.webhooks import WebhookReceived
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json
from tests.integration.outage._broker import OwnBroker, eventually, own_broker
from tests.integration.webhooks._kit import (
    PARTNER_SECRET,
    ingress_settings,
    read_all,
    running_gateway,
)

#: each test starts a broker of its own twice (10-60 s each on a loaded machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

AUTH = {"Authorization": "Bearer token-alpha"}
Client = TestClient[web.Request, web.Application]


async def _status(client: Client, path: str, body: dict[str, Any], seen: list[int]) -> int:
    response = await client.post(path, json=body, headers=AUTH)
    seen.append(response.status)
    if response.status == 503:
        assert response.headers["Retry-After"]
    return response.status


async def _ready(client: Client) -> bool:
    return (await client.get("/readyz")).status == 200


async def test_gateway_starts_without_kafka_and_a_503_is_never_written(
    tmp_path: Path, schema_registry: RegistrySettings, codec: Codec, catalogue: Catalogue
) -> None:
    own = OwnBroker(tmp_path)  # not started: the gateway comes up first
    kafka = KafkaSettings(bootstrap=own.bootstrap, request_timeout_ms=5_000, linger_ms=0)
    settings = GatewaySettings(tokens={"alpha": "token-alpha"}, publish_timeout_s=2.0)
    app = build_gateway(
        settings,
        kafka,
        schema_registry,
        catalogue,
        extensions=[calls_extension(kafka, schema_registry, catalogue)],
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    statuses: list[int] = []
    url = "/v1/events/call.requested"
    try:
        down = await client.get("/readyz")
        assert down.status == 503
        assert await _status(client, url, call_requested_json(1), statuses) == 503
        assert await _status(client, "/v1/calls", {"service": "s", "operation": "o"}, []) == 503

        await own.start()
        await apply_catalogue(kafka, catalogue)
        await eventually(lambda: _ready(client), timeout_s=120)
        await eventually(
            lambda: _is(202, _status(client, url, call_requested_json(2), statuses)), 120
        )

        await own.stop()
        refused = [call_requested_json(10), call_requested_json(11)]
        for body in refused:  # each one: 503, and never written later
            assert await _status(client, url, body, statuses) == 503
        assert not await _ready(client)

        await own.start()
        await eventually(
            lambda: _is(202, _status(client, url, call_requested_json(3), statuses)), 120
        )
        await eventually(lambda: _ready(client), timeout_s=60)
        written = [e["call_id"] for e in await _requests(kafka, codec, catalogue)]
    finally:
        await client.close()
        await own.stop()
    assert 422 not in statuses, statuses
    assert set(statuses) <= {202, 503}, statuses
    assert "call-10" not in written, written
    assert "call-11" not in written, written
    assert written.count("call-2") == 1, written  # its 503'd attempts were never written either
    assert written.count("call-3") == 1, written


async def _is(expected: int, status: Awaitable[int]) -> bool:
    return await status == expected


async def _requests(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> list[dict[str, Any]]:
    rows = await read_all(kafka, codec, catalogue.name("calls.requests"))
    return [event.model_dump() for _, event, _ in rows]


async def test_a_webhook_answered_503_is_written_once(
    tmp_path: Path, codec: Codec, catalogue: Catalogue
) -> None:
    """Accept a webhook, stop Kafka, POST a new id twice (503 each), start Kafka, POST it again
    (202): ``webhooks.inbound`` holds exactly one event for that id."""
    body = b'{"n": 1}'

    async def post(base: str, msg_id: str) -> int:
        headers = signed_headers([PARTNER_SECRET], msg_id, body)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/webhooks/partner", data=body, headers=headers) as r,
        ):
            return r.status

    async with own_broker(tmp_path, catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, linger_ms=0)  # 30 s: nothing expires
        async with running_gateway(
            kafka, codec, catalogue, ingress_settings(ack_timeout_s=1.5)
        ) as (
            base,
            gateway,
        ):
            gateway.stop_timeout_s = 1
            first = "msg_first_" + str(free_port())
            await eventually(lambda: _is(202, post(base, first)))
            await broker.stop()
            again = "msg_again_" + str(free_port())
            assert await post(base, again) == 503
            assert await post(base, again) == 503
            await broker.start()
            statuses: list[int] = []

            async def accepted() -> bool:
                statuses.append(await post(base, again))
                return statuses[-1] == 202

            await eventually(accepted, timeout_s=120)
            assert set(statuses) <= {202, 503}, statuses
            rows = await read_all(kafka, codec, catalogue.name("webhooks.inbound"))
    ids = [e.webhook_id for _, e, _ in rows if isinstance(e, WebhookReceived)]
    assert ids.count(again) == 1, ids
    assert ids.count(first) == 1, ids
