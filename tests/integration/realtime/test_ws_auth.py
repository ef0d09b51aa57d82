"""Authentication on GET /ws: every refusal closes with its documented code."""

from __future__ import annotations

import aiohttp
import jwt
import pytest

from connectors.gateway import GatewayService
from connectors.realtime import CloseCode
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.realtime._kit import KEY, running_gateway, token, ws_clients, ws_url

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        (None, CloseCode.UNAUTHORIZED),
        ("", CloseCode.UNAUTHORIZED),
        ("not-a-jwt", CloseCode.UNAUTHORIZED),
        (
            jwt.encode(
                {"sub": "x", "channels": ["alerts"], "exp": 4_000_000_000}, "other-key-" * 7
            ),
            CloseCode.UNAUTHORIZED,
        ),
        (jwt.encode({"sub": "x", "channels": ["alerts"]}, KEY), CloseCode.UNAUTHORIZED),  # no exp
        (
            jwt.encode({"sub": "x", "channels": "alerts", "exp": 4_000_000_000}, KEY),
            CloseCode.UNAUTHORIZED,
        ),
        (
            jwt.encode(
                {"sub": "x", "channels": ["alerts"], "exp": 4_000_000_000}, KEY, algorithm="HS512"
            ),
            CloseCode.UNAUTHORIZED,
        ),
        (
            jwt.encode(
                {"sub": "x", "channels": ["alerts"], "exp": 4_000_000_000}, "", algorithm="none"
            ),
            CloseCode.UNAUTHORIZED,
        ),
        ("expired", CloseCode.TOKEN_EXPIRED),
    ],
)
async def test_bad_credentials_close_with_their_code(
    gateway: GatewayService, credential: str | None, code: int
) -> None:
    if credential == "expired":
        credential = token(["alerts"], ttl_s=-60)
    async with ws_clients(gateway) as connect:
        client = await connect(credential)
        assert await client.closed_with() == code
        assert not [f for f in client.frames if f["type"] == "authenticated"]


async def test_first_frame_must_be_auth(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(authenticate=False)
        await client.send(op="subscribe", channel="alerts")
        assert await client.closed_with() == CloseCode.UNAUTHORIZED


async def test_no_auth_within_the_deadline_closes_4003(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    async with (
        running_gateway(kafka_settings, schema_registry, catalogue, auth_timeout_s=1.0) as gw,
        ws_clients(gw) as connect,
    ):
        client = await connect(authenticate=False)
        assert await client.closed_with() == CloseCode.AUTH_TIMEOUT


async def test_token_expiring_while_connected_closes_4002(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["alerts"], ttl_s=3))
        await client.until("authenticated")
        assert await client.closed_with() == CloseCode.TOKEN_EXPIRED


async def test_origin_not_allowed_is_refused_before_the_upgrade(gateway: GatewayService) -> None:
    upgrade = {
        "Origin": "http://evil.test",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(ws_url(gateway), headers=upgrade) as answer,
    ):
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "origin_not_allowed"
    async with ws_clients(gateway) as connect:
        client = await connect(token(["alerts"]), origin="http://allowed.test")
        await client.until("authenticated")


async def test_connections_per_token_are_capped(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    shared = token(["alerts"])
    async with (
        running_gateway(
            kafka_settings, schema_registry, catalogue, max_connections_per_token=2
        ) as gw,
        ws_clients(gw) as connect,
    ):
        first, second = await connect(shared), await connect(shared)
        await first.until("authenticated")
        await second.until("authenticated")
        third = await connect(shared)
        assert await third.closed_with() == CloseCode.TOO_MANY_CONNECTIONS
        other = await connect(token(["alerts"]))  # another token is not affected
        await other.until("authenticated")
        await first.ws.close()
        await first.closed_with()
        again = await connect(shared)  # a closed connection gives its slot back
        await again.until("authenticated")


async def test_subscriptions_limited_to_the_token_channels(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["integration:openai", "alerts"]))
        await client.until("authenticated")
        for channel, expected in [
            ("integration:openai", "subscribed"),
            ("integration:other", "error"),
            ("integration:*", "error"),
            ("alerts", "subscribed"),
            ("dead-letters", "error"),
        ]:
            await client.send(op="subscribe", channel=channel)
            frame = await client.next()
            assert frame["type"] == expected, (channel, frame)
