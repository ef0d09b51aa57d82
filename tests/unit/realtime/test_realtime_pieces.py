"""Pure pieces of the websocket fan-out: channels, tokens, request parsing, the send queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import jwt
import pytest

import connectors.realtime
from connectors.realtime import KINDS, RealtimeSettings, _frames, mint, parse_channel, verify
from connectors.realtime._connection import _drop_if_unread
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


@contextlib.asynccontextmanager
async def _loopback() -> AsyncIterator[tuple[asyncio.StreamWriter, socket.socket]]:
    """A real loopback TCP connection with small kernel buffers: our side's asyncio transport
    (behind a StreamWriter) and the peer's raw socket, which reads only when a test says so."""
    loop = asyncio.get_running_loop()
    server = socket.create_server(("127.0.0.1", 0))
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    await loop.sock_connect(peer, server.getsockname())
    ours, _ = server.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    _, writer = await asyncio.open_connection(sock=ours)
    try:
        yield writer, peer
    finally:
        writer.close()
        peer.close()
        server.close()


def _numbered(n: int) -> bytes:
    return _frames.wire(json.dumps({"n": n, "pad": "x" * (100 - len(str(n)))}).encode())


def _numbers(data: bytes) -> list[int]:
    """The numbers of the whole text frames in ``data``, in order; refuses a torn frame."""
    numbers: list[int] = []
    while data:
        size = data[1] & 0x7F
        assert data[0] == 0x81  # a text frame, unmasked
        assert size < 126
        assert len(data) >= 2 + size  # whole
        numbers.append(json.loads(data[2 : 2 + size])["n"])
        data = data[2 + size :]
    return numbers


async def _read_frames(peer: socket.socket, count: int) -> list[int]:
    """Read ``count`` text frames from the peer's socket; their numbers, in order."""
    loop = asyncio.get_running_loop()
    data = b""
    size = len(_numbered(0))
    async with asyncio.timeout(30):
        while len(data) < count * size:
            data += await loop.sock_recv(peer, count * size - len(data))
    return _numbers(data)


async def _read_to_end(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(30):
        while chunk := await loop.sock_recv(peer, 65_536):
            data += chunk
    return data


async def test_outbox_writes_straight_to_the_socket_while_the_kernel_takes_it() -> None:
    async with _loopback() as (writer, peer):
        box = Outbox(writer.transport, writer.drain, 10, 100_000, lambda: None)
        box.offer(_numbered(0))
        box.offer(_numbered(1) + _numbered(2), frames=2)  # one chunk of two frames
        assert len(box) == 0  # nothing queued: no writer task was needed
        assert box.queued_bytes == 0
        assert await _read_frames(peer, 3) == [0, 1, 2]


async def test_outbox_queues_what_the_kernel_refuses_and_cuts_over_the_budget() -> None:
    cut: list[bool] = []
    async with _loopback() as (writer, peer):
        box = Outbox(writer.transport, writer.drain, 50, 1_000_000, lambda: cut.append(True))
        running = asyncio.create_task(box.run())
        offered = 0
        while not cut:  # the peer reads nothing: the kernel fills, then the queue, then the cut
            box.offer(_numbered(offered))
            offered += 1
            assert offered < 100_000, "the outbox never cut a client that reads nothing"
        assert box.overflowed
        assert box.closed
        assert len(box) <= 50
        # a queue was used (the kernel's buffers hold far fewer than the frames offered), and
        # what it held was dropped at the cut; later offers are ignored
        box.offer(_numbered(offered))
        await asyncio.wait_for(running, 5)
        # the peer gets a gap-free prefix of what was offered, in order: the frames the kernel
        # and the transport had taken; the queued ones were dropped
        writer.close()
        got = _numbers(await _read_to_end(peer))
        assert got == list(range(len(got)))
        assert len(got) < offered - 1


async def test_outbox_put_waits_for_room_and_the_writer_keeps_the_order() -> None:
    async with _loopback() as (writer, peer):
        box = Outbox(writer.transport, writer.drain, 40, 1_000_000, lambda: None)
        running = asyncio.create_task(box.run())
        sent = 0
        while True:  # a replay: put waits once half the budget is held
            put = asyncio.create_task(box.put(_numbered(sent)))
            await asyncio.sleep(0.01)
            if not put.done():
                break
            sent += 1
            assert sent < 100_000, "put never waited for a client that reads nothing"
        assert len(box) >= 20
        # live frames still go on behind the replay's (nothing is over the whole budget)
        reading = asyncio.create_task(_read_frames(peer, sent + 2))
        await asyncio.wait_for(put, 30)  # the peer reads: room again
        box.offer(_numbered(sent + 1))
        assert await reading == list(range(sent + 2))
        assert not box.overflowed
        box.close()
        await asyncio.wait_for(running, 5)


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


async def test_a_closed_transport_still_holding_unread_bytes_is_reset() -> None:
    async with _loopback() as (writer, peer):
        transport = writer.transport
        while not transport.get_write_buffer_size():  # the peer reads nothing: the kernel fills
            transport.write(b"x" * 65_536)
        transport.close()  # a graceful close waits for the peer to read what is left, maybe forever
        _drop_if_unread(transport)
        async with asyncio.timeout(30):
            while True:  # the peer's TCP state, read without reading the socket
                if peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE:
                    break
                await asyncio.sleep(0.05)


_TCP_CLOSE = 7  # include/net/tcp_states.h: the state a reset leaves (a FIN leaves CLOSE_WAIT, 8)


@pytest.mark.parametrize(("size", "head"), [(125, 2), (126, 4), (65_535, 4), (65_536, 10)])
def test_wire_frames_are_rfc6455_text_frames(size: int, head: int) -> None:
    message = b"x" * size
    frame = _frames.wire(message)
    assert frame[0] == 0x81  # FIN, text
    assert not frame[1] & 0x80  # a server frame is not masked
    length = frame[1] & 0x7F
    declared = {4: int.from_bytes(frame[2:4], "big"), 10: int.from_bytes(frame[2:10], "big")}
    assert (length if head == 2 else declared[head]) == size
    assert length == {2: size, 4: 126, 10: 127}[head]
    assert frame[head:] == message
