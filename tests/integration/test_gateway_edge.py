"""Issue 10, gateway edge: every bad input answered 4xx in the one JSON shape, on the real broker.

One test (or more) per numbered item of the issue; the item is named in each test's docstring.
No test here reads the topics back, so the module shares one catalogue (each gateway is fresh).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from connectors.calls_api import calls_extension
from connectors.gateway import Extension, GatewayService, GatewaySettings, build_gateway
from connectors.webhooks.gateway import webhooks_extension
from connectors.webhooks.settings import (
    DeliverySettings,
    InboundSource,
    IngressSettings,
    WebhookSettings,
)
from infra.testing.pytest_plugin import _drop_topics, unique
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json

pytestmark = pytest.mark.integration

TOKENS = {"alpha": SecretStr("token-alpha"), "ops": SecretStr("token-ops")}
ALPHA = {"Authorization": "Bearer token-alpha"}
OPS = {"Authorization": "Bearer token-ops"}
PARTNER = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"  # base64 of 24 bytes
Answer = tuple[int, Any, dict[str, str]]


class Gateway:
    def __init__(self, base: str, port: int) -> None:
        self.base = base
        self.port = port

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        hdrs = dict(headers if headers is not None else ALPHA)
        if json_body is not None:
            data = json.dumps(json_body).encode()
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        body = io.BytesIO(data) if data is not None else None  # large bodies without a warning
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, data=body, headers=hdrs) as response,
        ):
            raw = await response.read()
            body = json.loads(raw) if raw else None
            return response.status, body, dict(response.headers)


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture(scope="module")
def catalogue(kafka_settings: KafkaSettings) -> Iterator[Catalogue]:
    """One catalogue for the module (a sync fixture: its loop is its own, not a test's)."""
    cat = Catalogue(prefix=unique("edge") + ".")
    asyncio.run(apply_catalogue(kafka_settings, cat))
    yield cat
    asyncio.run(_drop_topics(kafka_settings, lambda name: name.startswith(cat.prefix)))


@pytest.fixture
async def gateway(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[MakeGateway]:
    services: list[GatewayService] = []

    async def make(*, extensions: Sequence[Extension] | None = None, **overrides: Any) -> Gateway:
        settings = GatewaySettings(
            tokens=TOKENS, grants={"ops": ("call.started", "monitoring.*")}, **overrides
        )
        webhooks = WebhookSettings(
            ingress=IngressSettings(
                sources={"partner": InboundSource(secrets=(SecretStr(PARTNER),))}
            ),
            delivery=DeliverySettings(),
        )
        default = [
            calls_extension(kafka_settings, schema_registry, catalogue, services=["search"]),
            webhooks_extension(kafka_settings, schema_registry, catalogue, webhooks),
        ]
        app = build_gateway(
            settings,
            kafka_settings,
            schema_registry,
            catalogue,
            extensions=default if extensions is None else extensions,
        )
        service = GatewayService(app, "127.0.0.1", 0)
        await service.start()
        services.append(service)
        return Gateway(f"http://127.0.0.1:{service.bound_port}", int(service.bound_port or 0))

    try:
        yield make
    finally:
        for service in services:
            await service.stop()


def _error(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str), error
    assert isinstance(error["message"], str), error
    return error


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- item 3: internal event types -----------------------------------------------------------


INTERNAL = {
    "call.started": {
        "call_id": "c1",
        "service": "search",
        "attempt": 0,
        "idempotency_key": "k1",
        "claim_id": "forged",
        "lane_topic": "calls.lane.normal",
        "lane_partition": 0,
        "lane_offset": 0,
        "worker": "w1",
    },
    "call.succeeded": {},
    "webhook.endpoint_registered": {},
    "monitoring.alert_raised": {},
}


async def test_item3_internal_event_types_are_403_without_a_grant(gateway: MakeGateway) -> None:
    """Item 3: any client token could write call.started, call.succeeded, ... (202)."""
    gw = await gateway()
    for event_type in INTERNAL:
        status, body, _ = await gw.send("POST", f"/v1/events/{event_type}", json_body={})
        assert status == 403, (event_type, body)
        assert _error(body)["code"] == "internal_event_type"
        status, body, _ = await gw.send(
            "POST",
            f"/v1/events/{event_type}:batch",
            data=b"{}\n",
            headers={**ALPHA, "Content-Type": "application/x-ndjson"},
        )
        assert status == 403, (event_type, body)
    # a public type is still open to the same token
    status, body, _ = await gw.send(
        "POST", "/v1/events/call.requested", json_body=call_requested_json(1)
    )
    assert status == 202, body


async def test_item3_a_granted_token_writes_its_internal_types_only(gateway: MakeGateway) -> None:
    """Item 3: grants come from configuration, per token, with patterns."""
    gw = await gateway()
    status, body, _ = await gw.send(
        "POST", "/v1/events/call.started", json_body=INTERNAL["call.started"], headers=OPS
    )
    assert status == 202, body
    status, body, _ = await gw.send("POST", "/v1/events/call.succeeded", json_body={}, headers=OPS)
    assert status == 403, body  # not in ops' grants


async def test_item3_openapi_shows_each_reader_what_it_may_write(gateway: MakeGateway) -> None:
    """Item 3: the OpenAPI document listed every internal type to everyone."""
    gw = await gateway()
    _, anonymous, _ = await gw.send("GET", "/openapi.json", headers={})
    paths = set(anonymous["paths"])
    assert "/v1/events/call.requested" in paths
    assert not {p for p in paths if p.startswith("/v1/events/call.started")}
    assert "/v1/events/monitoring.alert_raised" not in paths
    _, for_ops, _ = await gw.send("GET", "/openapi.json", headers=OPS)
    assert {"/v1/events/call.started", "/v1/events/monitoring.alert_raised"} <= set(
        for_ops["paths"]
    )
    assert "/v1/events/call.succeeded" not in for_ops["paths"]


# --- items 11 and 4 (edge part): strict fields, call checks --------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempt", "3"),
        ("attempt", True),
        ("timeout_ms", False),
        ("deadline", 0),
        ("timeout_ms", -5),
        ("attempt", -2),
        ("max_attempts", 0),
        ("attempt", 2**63),
        ("timeout_ms", -(2**64)),
        ("reply_to", "no.such.topic"),
        ("idempotency_key", "key\r\nX-Injected: 1"),
        ("payload", _nested(5_000)),
    ],
)
async def test_items_11_and_4_wrong_field_values_are_400_naming_the_field(
    gateway: MakeGateway, field: str, value: object
) -> None:
    """Items 11, 4 and 12 (long range): these were accepted (202) or answered 422."""
    gw = await gateway(extensions=[])
    body = {**call_requested_json(2), field: value}
    status, answer, _ = await gw.send("POST", "/v1/events/call.requested", json_body=body)
    assert status == 400, answer
    error = _error(answer)
    assert error["code"] == "invalid_event"
    assert field in {f["field"] for f in error["fields"]}


async def test_item11_integral_numbers_and_iso_dates_still_pass(gateway: MakeGateway) -> None:
    """Item 11: strict, not stricter than JSON Schema (3.0 is an integer there)."""
    gw = await gateway(extensions=[])
    body = {
        **call_requested_json(3),
        "attempt": 1.0,
        "timeout_ms": 2e3,
        "deadline": "2031-01-01T00:00:00Z",
    }
    status, answer, _ = await gw.send("POST", "/v1/events/call.requested", json_body=body)
    assert status == 202, answer


async def test_item4_v1_calls_checks_depth_keys_and_services(gateway: MakeGateway) -> None:
    """Item 4 (edge) and issue 12 section 6: /v1/calls for an unknown service is 404."""
    gw = await gateway()
    ok = {"service": "search", "operation": "q"}
    deep = (
        '{"service": "search", "operation": "q", "payload": {"a": ' + _nested(1_000) + "}}"
    ).encode()
    status, answer, _ = await gw.send("POST", "/v1/calls", data=deep)
    assert status == 400, answer
    assert _error(answer)["code"] == "invalid_call", answer
    status, answer, _ = await gw.send(
        "POST", "/v1/calls", json_body={**ok, "idempotency_key": "a\nb"}
    )
    assert status == 400, answer
    assert "idempotency_key" in {f["field"] for f in _error(answer)["fields"]}
    for bad in ({"timeout_ms": "5"}, {"timeout_ms": -1}, {"deadline": 0}, {"priority": 1}):
        status, answer, _ = await gw.send("POST", "/v1/calls", json_body={**ok, **bad})
        assert status == 400, (bad, answer)
    status, answer, _ = await gw.send("POST", "/v1/calls", json_body={**ok, "service": "nope"})
    assert status == 404, answer
    assert _error(answer)["services"] == ["search"]
    status, answer, _ = await gw.send("POST", "/v1/calls", json_body=ok)
    assert status == 202, answer


# --- items 10, 12, 13, 14, 6: one error shape, limits before parsing, 413 not 5xx -------------


async def test_item10_deep_json_on_webhook_endpoints_is_400_json(gateway: MakeGateway) -> None:
    """Item 10: 10k-deep JSON gave a text/plain 500 (RecursionError)."""
    gw = await gateway()
    deep = ('{"url": "https://x.example/", "headers": ' + _nested(10_000) + "}").encode()
    for method, path in (
        ("POST", "/v1/webhook-endpoints"),
        ("PATCH", "/v1/webhook-endpoints/ep_x"),
    ):
        status, answer, headers = await gw.send(method, path, data=deep)
        assert status == 400, answer
        assert headers["Content-Type"].startswith("application/json")
        _error(answer)


async def test_item13_huge_endpoint_description_is_413_not_503(gateway: MakeGateway) -> None:
    """Item 13: a 3 MB description answered 503 "unavailable" (retry forever)."""
    gw = await gateway()
    body = {"url": "https://x.example/", "description": "d" * 3_000_000}
    status, answer, _ = await gw.send("POST", "/v1/webhook-endpoints", json_body=body)
    assert status == 413, answer
    assert _error(answer)["code"] == "body_too_large"


async def test_item14_error_details_are_capped(gateway: MakeGateway) -> None:
    """Item 14: 130k unknown keys gave a 12.5 MB 400."""
    gw = await gateway(extensions=[])
    keys = 75_000
    body = {**call_requested_json(4), **{f"k{i}": 0 for i in range(keys)}}
    raw = json.dumps(body).encode()
    assert len(raw) < 1_048_576
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gw.base + "/v1/events/call.requested",
            data=io.BytesIO(raw),
            headers={**ALPHA, "Content-Type": "application/json"},
        ) as response,
    ):
        answer = await response.read()
        assert response.status == 400
    assert len(answer) < 16_384, len(answer)
    error = _error(json.loads(answer))
    assert len(error["fields"]) == 20
    assert error["more_fields"] == keys - 20
    # batches cap each line's details too
    lines = (raw + b"\n") * 3
    status, batch, _ = await gw.send(
        "POST",
        "/v1/events/call.requested:batch",
        data=lines,
        headers={**ALPHA, "Content-Type": "application/x-ndjson"},
    )
    assert status == 400
    assert len(json.dumps(batch)) < 16_384
    assert _error(batch)["rejected"] == 3


async def test_item12_a_call_that_cannot_fit_a_record_is_413_not_422(gateway: MakeGateway) -> None:
    """Item 12: under the 1 MiB body limit, yet too large to write: 422 publish_rejected with
    the producer's MessageSizeTooLargeError text."""
    gw = await gateway(extensions=[])
    base = json.dumps({**call_requested_json(5), "payload": ""}).encode()
    payload = "p" * (1_048_500 - len(base))
    status, answer, _ = await gw.send(
        "POST",
        "/v1/events/call.requested",
        json_body={**call_requested_json(5), "payload": payload},
    )
    assert status == 413, answer
    error = _error(answer)
    assert error["code"] == "too_large_to_write"
    assert error["limit"] == 1_048_576
    assert "MessageSizeTooLarge" not in error["message"]


async def test_item12_404_405_and_batch_400s_share_the_error_shape(gateway: MakeGateway) -> None:
    """Item 12: 404/405 were plain text; batch 400s were {accepted, rejected, results}."""
    gw = await gateway()
    status, answer, _ = await gw.send("GET", "/nowhere")
    assert status == 404, answer
    assert _error(answer)["code"] == "not_found"
    status, answer, headers = await gw.send("DELETE", "/v1/webhook-endpoints")
    assert status == 405, answer
    assert _error(answer)["code"] == "method_not_allowed"
    assert set(headers["Allow"].split(",")) >= {"GET", "POST"}
    for data in (b"", b"\n\n", b"{}\n[]\n"):
        status, answer, _ = await gw.send(
            "POST",
            "/v1/events/call.requested:batch",
            data=data,
            headers={**ALPHA, "Content-Type": "application/x-ndjson"},
        )
        assert status == 400
        _error(answer)


async def test_item6_webhook_body_that_cannot_fit_a_record_is_413(gateway: MakeGateway) -> None:
    """Item 6: a 1,048,138-byte signed body (within max_body_bytes) answered 500."""
    from connectors.webhooks import WebhookSecret, signed_headers

    gw = await gateway()
    body = b'{"x": "' + b"y" * (1_048_138 - 10) + b'"}'
    headers = signed_headers([WebhookSecret.parse(PARTNER)], "msg_big", body)
    status, answer, _ = await gw.send("POST", "/webhooks/partner", data=body, headers=headers)
    assert status == 413, answer
    error = _error(answer)
    assert error["limit"] < 1_048_138  # the real limit: what fits in a record with its envelope


# --- item 15: the whole body, however it arrives ----------------------------------------------


async def test_item15_v1_calls_reads_a_body_sent_in_two_segments(gateway: MakeGateway) -> None:
    """Item 15: /v1/calls read the body with one read(n): 400 "EOF while parsing"."""
    gw = await gateway()
    body = json.dumps({"service": "search", "operation": "q", "payload": {"k": "v" * 4000}})
    head = (
        f"POST /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-alpha\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(head.encode() + body[:100].encode())
    await writer.drain()
    await asyncio.sleep(0.3)  # the second segment comes later
    writer.write(body[100:].encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    await writer.wait_closed()  # else the transport may outlive the test's loop (ResourceWarning)
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 202 " in status_line, answer[:600]


# --- item 16: slow headers --------------------------------------------------------------------


async def test_item16_connections_trickling_headers_are_closed(gateway: MakeGateway) -> None:
    """Item 16: 20 connections trickling header lines were all still open after 25 s."""
    gw = await gateway(extensions=[], header_timeout_s=1.0)
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.setblocking(False)
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)

    async def trickle_until_closed(sock: socket.socket) -> bool:
        for i in range(60):  # up to ~30 s of trickling, a line every 0.5 s
            try:
                await loop.sock_sendall(sock, f"X-Slow-{i}: 1\r\n".encode())
                data = await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout=0.5)
            except TimeoutError:
                continue
            except OSError:
                return True  # reset by the server
            if data == b"":
                return True  # closed by the server
        return False

    try:
        closed = await asyncio.gather(*(trickle_until_closed(s) for s in socks))
    finally:
        for sock in socks:
            sock.close()
    assert all(closed), f"{closed.count(False)} of 20 trickling connections still open"
