from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import standardwebhooks
from aiohttp import web

from connectors.webhooks import DestinationPolicy, SenderSettings, WebhookSecret, WebhookSender
from tests.unit.webhooks.conftest import Canary

LOOPBACK = DestinationPolicy.allowing(["127.0.0.0/8"])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_delivery_verifies_with_reference_library(
    receiver: Callable[[Handler], Awaitable[str]],
) -> None:
    old, new = WebhookSecret.generate(), WebhookSecret.generate()
    seen: list[tuple[bytes, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK)) as sender:
        result = await sender.send(
            url, "msg_1", b'{"a": 1}', [old, new], extra_headers={"X-Team": "t"}
        )
    assert result.ok
    assert result.status == 204
    body, headers = seen[0]
    assert headers["X-Team"] == "t"
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret.reveal()).verify(body, headers) == {"a": 1}


async def test_custom_headers_cannot_override_signature(
    receiver: Callable[[Handler], Awaitable[str]],
) -> None:
    secret = WebhookSecret.generate()
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response()

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK)) as sender:
        await sender.send(url, "m", b"{}", [secret], extra_headers={"webhook-id": "forged"})
    assert seen[0]["webhook-id"] == "m"


async def test_redirect_is_a_failure_and_not_followed(
    receiver: Callable[[Handler], Awaitable[str]],
) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/hook":
            raise web.HTTPFound("/elsewhere")
        return web.Response()

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK)) as sender:
        result = await sender.send(url, "m", b"{}", [WebhookSecret.generate()])
    assert result.status == 302
    assert not result.ok
    assert hits == ["/hook"]


async def test_response_body_read_is_capped(receiver: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, body=b"x" * 1_000_000)

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK, max_response_bytes=100)) as sender:
        result = await sender.send(url, "m", b"{}", [WebhookSecret.generate()])
    assert result.status == 500
    assert len(result.response_excerpt) == 100


async def test_timeout(receiver: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK, timeout_s=0.2)) as sender:
        result = await sender.send(url, "m", b"{}", [WebhookSecret.generate()])
    assert result.status is None
    assert result.error == "timeout"
    assert 150 < result.duration_ms < 2000


async def test_retry_after_is_reported(receiver: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "42"})

    url = await receiver(handler)
    async with WebhookSender(SenderSettings(policy=LOOPBACK)) as sender:
        result = await sender.send(url, "m", b"{}", [WebhookSecret.generate()])
    assert result.status == 429
    assert result.retry_after_s == 42


REFUSED_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "127.1",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::]",
]


@pytest.mark.parametrize("host", REFUSED_SPELLINGS)
async def test_ssrf_canary_sees_no_connection(canary: Canary, host: str) -> None:
    async with WebhookSender(SenderSettings(timeout_s=2)) as sender:
        result = await sender.send(
            f"http://{host}:{canary.port}/x", "m", b"{}", [WebhookSecret.generate()]
        )
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("unsafe_destination"), result.error
    await asyncio.sleep(0.05)
    assert canary.connections == 0


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "192.168.0.1",
        "172.16.0.1",
        "[fe80::1]",
        "[fc00::1]",
    ],
)
async def test_ssrf_refuses_without_connecting(host: str) -> None:
    async with WebhookSender(SenderSettings(timeout_s=5)) as sender:
        result = await sender.send(f"http://{host}:80/x", "m", b"{}", [WebhookSecret.generate()])
    assert result.error is not None
    assert result.error.startswith("unsafe_destination")
    assert result.duration_ms < 500  # refused up front, not a connect timeout


async def test_allow_listed_loopback_is_reached(canary: Canary) -> None:
    async with WebhookSender(SenderSettings(policy=LOOPBACK, timeout_s=2)) as sender:
        result = await sender.send(
            f"http://127.0.0.1:{canary.port}/x", "m", b"{}", [WebhookSecret.generate()]
        )
    assert result.status is None  # the canary hangs up without answering
    assert canary.connections == 1
