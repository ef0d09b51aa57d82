"""Pure pieces of the websocket fan-out: channels, tokens, request parsing, the send queue."""

from __future__ import annotations

import asyncio

import jwt
import pytest

import connectors.realtime
from connectors.realtime import KINDS, RealtimeSettings, mint, parse_channel, verify
from connectors.realtime._outbox import Outbox
from connectors.realtime.channels import channels_of, fanout_topics
from connectors.realtime.errors import (
    ChannelError,
    ProtocolError,
    TokenExpiredError,
    TokenRejectedError,
)
from connectors.realtime.protocol import parse_request
from infra.config import load_settings
from streams.events.calls import CallSucceeded
from streams.events.monitoring import AlertRaised, Severity
from streams.topics import Catalogue

KEY = "unit-test-key-unit-test-key-unit-test-key-unit-test-key-0123456789"


def test_every_channel_topic_is_in_the_catalogue() -> None:
    catalogue = Catalogue()
    for topic in fanout_topics():
        catalogue.spec(topic)
    assert {k.name for k in KINDS} == {
        "research",
        "integration",
        "alerts",
        "dead-letters",
        "webhooks",
        "system",
        "collab",
    }


def test_parse_channel() -> None:
    assert parse_channel("research:r-1").name == "research:r-1"
    assert parse_channel("integration:*").param == "*"
    assert parse_channel("alerts").param is None
    for bad in ("", "research", "alerts:x", "nope:1", "research:a b", 3, "collab:" + "x" * 300):
        with pytest.raises(ChannelError):
            parse_channel(bad)


def test_a_record_belongs_to_its_channels() -> None:
    call = CallSucceeded(
        call_id="c1",
        service="openai",
        operation="chat",
        status=200,
        latency_ms=1.0,
        attempt=1,
        idempotency_key="c1",
    )
    assert sorted(channels_of("calls.results", call)) == ["integration:*", "integration:openai"]
    alert = AlertRaised(alert_id="a", rule="r", severity=Severity.INFO, summary="s")
    assert channels_of("monitoring.alerts", alert) == ["alerts"]
    channel = parse_channel("integration:openai")
    assert channel.matches("calls.results", call)
    assert not parse_channel("integration:other").matches("calls.results", call)
    # calls.results is keyed by call id: the key proves nothing, so it is decoded
    assert parse_channel("integration:other").key_may_match("calls.results", b"c1")
    assert not parse_channel("integration:other").key_may_match("integration.health", b"openai")


def test_tokens_round_trip_and_refusals() -> None:
    grant = verify(mint(KEY, ["integration:*", "alerts"], ttl_s=60, subject="ann"), KEY, ("HS256",))
    assert grant.subject == "ann"
    assert grant.allows("integration:openai")
    assert grant.allows("alerts")
    assert not grant.allows("research:r1")
    assert not grant.allows("alerts:x")
    with pytest.raises(TokenExpiredError):
        verify(mint(KEY, ["alerts"], ttl_s=-5), KEY, ("HS256",))
    with pytest.raises(TokenRejectedError):
        verify(mint(KEY, ["alerts"], ttl_s=60), KEY + "x", ("HS256",))
    with pytest.raises(TokenRejectedError):
        verify(
            jwt.encode({"sub": "a", "exp": 4_000_000_000, "channels": ["x"]}, "", algorithm="none"),
            KEY,
            ("HS256",),
        )
    with pytest.raises(TokenRejectedError):
        verify(None, KEY, ("HS256",))


def test_none_is_never_an_accepted_algorithm() -> None:
    with pytest.raises(ValueError, match="none"):
        RealtimeSettings(jwt_algorithms="HS256,none")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "invalid_json"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),
        ('"x"', "bad_request"),
        ('{"op": "x"}', "unknown_op"),
        ('{"op": "ping", "id": [1]}', "bad_request"),
        ('{"op": "subscribe", "since": []}', "bad_request"),
        (
            '{"op": "subscribe", "since": [{"topic": "t", "partition": -1, "offset": 0, "epoch": "e"}]}',
            "bad_request",
        ),
        (
            '{"op": "subscribe", "since": [{"topic": "t", "partition": 0, "offset": true, "epoch": "e"}]}',
            "bad_request",
        ),
    ],
)
def test_bad_requests(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_request(text)
    assert refused.value.code == code


def test_a_good_subscribe() -> None:
    request = parse_request(
        '{"op": "subscribe", "id": 4, "channel": "alerts",'
        ' "since": [{"topic": "t", "partition": 0, "offset": -1, "epoch": "e"}]}'
    )
    assert request.op == "subscribe"
    assert request.id == 4
    assert request.since is not None
    assert request.since[0].offset == -1


async def test_outbox_cuts_on_overflow_and_frees_its_memory() -> None:
    cut: list[bool] = []
    box = Outbox(max_frames=3, max_bytes=1000, on_overflow=lambda: cut.append(True))
    for _ in range(3):
        box.offer(b"x" * 10)
    assert len(box) == 3
    assert not cut
    box.offer(b"x")
    assert cut == [True]
    assert box.overflowed
    assert len(box) == 0
    assert box.queued_bytes == 0
    assert await box.take() is None


async def test_outbox_put_waits_for_room() -> None:
    box = Outbox(max_frames=4, max_bytes=10_000, on_overflow=lambda: None)
    await box.put(b"a")
    await box.put(b"b")
    waiting = asyncio.create_task(box.put(b"c"))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # half the budget is used: a replay waits
    assert await box.take() == b"a"
    await asyncio.wait_for(waiting, 5)
    assert [await box.take(), await box.take()] == [b"b", b"c"]


def test_settings_from_the_environment() -> None:
    cfg = load_settings(
        {
            "BACKBONE_WS_JWT_KEY": KEY,
            "BACKBONE_WS_JWT_ALGORITHMS": "HS256,HS512",
            "BACKBONE_WS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "BACKBONE_WS_AUTH_TIMEOUT": "3",
            "BACKBONE_WS_MAX_CONNECTIONS_PER_TOKEN": "2",
        }
    ).realtime
    assert cfg.jwt_key is not None
    assert cfg.jwt_key.get_secret_value() == KEY
    assert cfg.jwt_algorithms == ("HS256", "HS512")
    assert cfg.origin_allowed("https://b.example")
    assert not cfg.origin_allowed("https://c.example")
    assert cfg.origin_allowed(None)
    assert cfg.auth_timeout_s == 3
    assert cfg.max_connections_per_token == 2
    assert KEY not in repr(cfg)


def test_realtime_exports() -> None:
    assert sorted(connectors.realtime.__all__) == [
        "Channel",
        "ChannelKind",
        "CloseCode",
        "Grant",
        "KINDS",
        "RealtimeSettings",
        "mint",
        "parse_channel",
        "realtime_extension",
        "verify",
    ]
