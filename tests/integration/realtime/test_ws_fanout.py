"""Fan-out under pressure: a client that stops reading is cut, the others keep receiving; several
gateway instances each deliver everything to their own clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Callable

import pytest

from connectors.gateway import GatewayService
from connectors.realtime import CloseCode
from connectors.realtime._routes import CLOSES, CONNECTIONS, FANOUT
from streams.events.collab import CollabMessagePosted
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.realtime._kit import (
    app_of,
    new_id,
    publish_all,
    running_gateway,
    token,
    ws_clients,
)

pytestmark = pytest.mark.integration


def _message(room: str, i: int, size: int = 4_000) -> CollabMessagePosted:
    return CollabMessagePosted(room=room, author="bot", body=f"{i}:" + "x" * size)


async def _stalled_client(port: int, grant: str, channel: str) -> socket.socket:
    """A raw websocket client that authenticates, subscribes, then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await loop.sock_recv(sock, 1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    for frame in ({"op": "auth", "token": grant}, {"op": "subscribe", "channel": channel}):
        await loop.sock_sendall(sock, _masked(json.dumps(frame).encode()))
    return sock


def _masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 65536
    if len(payload) < 126:
        return bytes([0x81, 0x80 | len(payload)]) + mask + body
    return bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + body


async def test_a_client_that_stops_reading_is_cut_and_the_others_get_everything(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    publisher: Publisher,
) -> None:
    room = new_id("room")
    channel = f"collab:{room}"
    grant = token(["collab:*"])
    # ~1.2 MB of frames: more than the bounded kernel send buffer (64 KiB, doubled by the kernel),
    # the stalled socket's receive buffer and the 200-frame queue hold together; with the kernel's
    # auto-tuning (socket_send_buffer_bytes=0) the send buffer alone could take 4 MiB
    messages = [_message(room, i, size=2_000) for i in range(600)]
    async with running_gateway(
        kafka_settings,
        schema_registry,
        catalogue,
        send_queue_frames=200,
        send_queue_bytes=4_000_000,
        socket_send_buffer_bytes=65_536,
        heartbeat_s=600,
    ) as gw:
        assert gw.bound_port is not None
        async with ws_clients(gw) as connect:
            readers = [await connect(grant) for _ in range(3)]
            for reader in readers:
                await reader.send(op="subscribe", channel=channel)
                await reader.until("subscribed")
            stalled = await _stalled_client(gw.bound_port, grant, channel)
            try:
                connections = app_of(gw)[CONNECTIONS]
                await _eventually(lambda: len(connections) == 4)
                # every reader reads all the time (an aiohttp client that is not read stops
                # reading its socket too), while the stalled one never does
                reading = [
                    asyncio.create_task(r.publications(channel, len(messages))) for r in readers
                ]
                await publish_all(publisher, messages)
                for got in await asyncio.gather(*reading):
                    assert [int(p["payload"]["body"].split(":")[0]) for p in got] == list(
                        range(len(messages))
                    )
                # the stalled client was cut with 4008 and its connection and queue released
                await _eventually(lambda: len(connections) == 3)
                assert app_of(gw)[CLOSES] == {CloseCode.SLOW_CONSUMER: 1}
                assert app_of(gw)[FANOUT].subscriber_count(channel) == 3
                assert all(c.queued_bytes <= 4_000_000 for c in connections)
                # when it reads again it finds the frames the kernel and the transport held, in
                # order and without a gap, then the close frame (4008), then the end of the stream
                frames = _server_frames(await _drain(stalled))
                assert frames[-1][0] == 0x8
                assert int.from_bytes(frames[-1][1][:2], "big") == CloseCode.SLOW_CONSUMER
                texts = [json.loads(body) for opcode, body in frames[:-1] if opcode == 0x1]
                numbers = [
                    int(f["payload"]["body"].split(":")[0])
                    for f in texts
                    if f["type"] == "publication"
                ]
                assert numbers == list(range(len(numbers)))
                assert len(numbers) < len(messages)
            finally:
                stalled.close()


async def test_a_silent_client_that_answers_no_ping_is_dropped_and_a_live_one_stays(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    grant = token(["collab:*"])
    async with running_gateway(kafka_settings, schema_registry, catalogue, heartbeat_s=1) as gw:
        assert gw.bound_port is not None
        async with ws_clients(gw) as connect:
            live = await connect(grant)  # aiohttp's client answers pings while it reads
            await live.until("authenticated")
            reading = asyncio.create_task(live.closed_with(timeout=120))
            silent = await _stalled_client(gw.bound_port, grant, f"collab:{new_id('room')}")
            try:
                connections = app_of(gw)[CONNECTIONS]
                await _eventually(lambda: app_of(gw)[CLOSES] == {1006: 1})
                await _eventually(lambda: len(connections) == 1)
                await asyncio.sleep(3)  # three more heartbeats for the live client
                assert not reading.done()
                assert app_of(gw)[CLOSES] == {1006: 1}
            finally:
                silent.close()
                reading.cancel()


async def _eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(60):
        while True:
            if condition():
                return
            await asyncio.sleep(0.1)


async def _drain(sock: socket.socket) -> bytes:
    """Read what the server sent until it closed the TCP connection."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(60):
        while chunk := await loop.sock_recv(sock, 65536):
            data += chunk
    return bytes(data)


def _server_frames(stream: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each frame in a server's (unmasked) frame stream."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(stream):
        opcode, length = stream[i] & 0x0F, stream[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = int.from_bytes(stream[i : i + 2], "big")
            i += 2
        elif length == 127:
            length = int.from_bytes(stream[i : i + 8], "big")
            i += 8
        assert i + length <= len(stream), "a torn frame"
        frames.append((opcode, stream[i : i + length]))
        i += length
    return frames


async def test_two_gateway_instances_both_deliver_every_event(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    publisher: Publisher,
) -> None:
    room = new_id("room")
    channel = f"collab:{room}"
    messages = [_message(room, i, size=10) for i in range(30)]
    async with (
        running_gateway(kafka_settings, schema_registry, catalogue) as one,
        running_gateway(kafka_settings, schema_registry, catalogue) as two,
        ws_clients(one) as connect_one,
        ws_clients(two) as connect_two,
    ):
        clients = [await connect_one(token(["collab:*"])), await connect_two(token(["collab:*"]))]
        for client in clients:
            await client.send(op="subscribe", channel=channel)
            await client.until("subscribed")
        await publish_all(publisher, messages)
        for client in clients:
            got = await client.publications(channel, len(messages))
            assert [p["event_id"] for p in got] == [str(m.event_id) for m in messages]
        for service in (one, two):
            assert app_of(service)[FANOUT].dispatched >= len(messages)


async def test_gateway_shutdown_closes_clients_with_1001(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    async with running_gateway(kafka_settings, schema_registry, catalogue) as gw:
        assert isinstance(gw, GatewayService)
        async with ws_clients(gw) as connect:
            client = await connect(token(["alerts"]))
            await client.until("authenticated")
            stopping = asyncio.create_task(gw.stop())
            assert await client.closed_with() == CloseCode.GOING_AWAY
            await stopping
