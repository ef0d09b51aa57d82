"""GET /ws against the real broker: subscribe, unsubscribe, publications, and frames it refuses."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.gateway import GatewayService
from streams.events.monitoring import AlertRaised, Severity
from streams.producer import Publisher
from tests.integration.realtime._kit import new_id, progress, publish_all, token, ws_clients

pytestmark = pytest.mark.integration


async def test_subscribe_receives_only_its_channel_with_positions_then_unsubscribe_stops_it(
    gateway: GatewayService, publisher: Publisher
) -> None:
    mine, other = new_id(), new_id()
    async with ws_clients(gateway) as connect:
        client = await connect(token(["research:*"]))
        assert (await client.until("authenticated"))["subject"] == "dev"
        await client.send(op="subscribe", channel=f"research:{mine}", id=1)
        subscribed = await client.until("subscribed")
        assert subscribed["id"] == 1
        assert subscribed["positions"], "a subscription names its start on every partition"
        await publish_all(publisher, [progress(other, 0), progress(mine, 1), progress(mine, 2)])
        got = await client.publications(f"research:{mine}", 2)
        assert [p["payload"]["steps_completed"] for p in got] == [1, 2]
        first = got[0]
        assert first["event_type"] == "research.progress_reported"
        assert first["payload"]["research_id"] == mine
        assert first["event_id"] == first["payload"]["event_id"]
        assert set(first["position"]) == {"topic", "partition", "offset", "epoch"}
        assert first["position"]["topic"].endswith("research.events")

        await client.send(op="unsubscribe", channel=f"research:{mine}", id="u")
        assert (await client.until("unsubscribed"))["id"] == "u"
        await publish_all(publisher, [progress(mine, 3)])
        await client.send(op="ping", id="after")  # the pong comes after anything already sent
        await client.until("pong")
        assert not [
            p for p in client.of(f"research:{mine}") if p["payload"]["steps_completed"] == 3
        ]
        assert not client.of(f"research:{other}")


async def test_wildcard_and_plain_channels(gateway: GatewayService, publisher: Publisher) -> None:
    a, b = new_id(), new_id()
    async with ws_clients(gateway) as connect:
        client = await connect(token(["research:*", "alerts"]))
        await client.send(op="subscribe", channel="research:*")
        await client.until("subscribed")
        await client.send(op="subscribe", channel="alerts")
        await client.until("subscribed")
        alert = AlertRaised(
            alert_id=new_id("alert"), rule="error-rate", severity=Severity.CRITICAL, summary="x"
        )
        await publish_all(publisher, [progress(a, 1), progress(b, 2), alert])
        got = await client.publications("research:*", 2)
        assert {p["payload"]["research_id"] for p in got} == {a, b}
        (raised,) = await client.publications("alerts", 1)
        assert raised["payload"]["alert_id"] == alert.alert_id
        assert raised["payload"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "bad_request"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"id": 7}', "unknown_op"),
        ('{"op": "subscribe", "channel": "nope:1", "id": 3}', "unknown_channel"),
        ('{"op": "subscribe", "channel": "alerts:1"}', "unknown_channel"),
        ('{"op": "subscribe", "channel": "research"}', "unknown_channel"),
        ('{"op": "subscribe", "channel": "integration:x"}', "forbidden"),
        ('{"op": "unsubscribe", "channel": "research:x"}', "not_subscribed"),
        ('{"op": "subscribe", "channel": "research:x", "since": "yesterday"}', "bad_request"),
        ('{"op": "subscribe", "channel": "research:x", "since": [{"topic": 1}]}', "bad_request"),
        ('{"op": "auth", "token": "again"}', "already_authenticated"),
        ("[" * 30_000 + "]" * 30_000, "invalid_json"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_connection_stays_usable(
    gateway: GatewayService, frame: str, code: str
) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["research:*"]), max_msg_size=0)
        await client.until("authenticated")
        await client.ws.send_str(frame)
        error = await client.until("error")
        assert error["code"] == code, error
        assert error["message"]
        await client.send(op="ping", id="still-there")
        assert (await client.until("pong"))["id"] == "still-there"


async def test_binary_frames_are_refused_with_an_error_frame(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["alerts"]))
        await client.until("authenticated")
        await client.ws.send_bytes(b"\x00\x01")
        assert (await client.until("error"))["code"] == "bad_request"


async def test_oversized_frame_closes_with_1009_and_the_gateway_keeps_serving(
    gateway: GatewayService,
) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["alerts"]))
        await client.until("authenticated")
        await client.send(op="ping", pad="x" * 70_000)
        assert await client.closed_with() == 1009
        again = await connect(token(["alerts"]))
        await again.send(op="ping", id=1)
        assert (await again.until("pong"))["id"] == 1


async def test_subscription_cap_and_duplicate_subscription(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["research:*"]))
        await client.until("authenticated")
        for i in range(64):
            await client.send(op="subscribe", channel=f"research:r{i}")
        await client.send(op="subscribe", channel="research:r0", id="dup")
        await client.send(op="subscribe", channel="research:one-too-many", id="cap")
        errors: dict[str, str] = {}
        async with asyncio.timeout(60):
            while len(errors) < 2:
                frame = await client.next()
                if frame["type"] == "error":
                    errors[frame["id"]] = frame["code"]
        assert errors == {"dup": "already_subscribed", "cap": "too_many_subscriptions"}
        assert len([f for f in client.frames if f["type"] == "subscribed"]) == 64


async def test_frames_are_json_text(gateway: GatewayService) -> None:
    async with ws_clients(gateway) as connect:
        client = await connect(token(["alerts"]))
        message = await client.ws.receive(timeout=60)
        assert json.loads(message.data)["type"] == "authenticated"
