"""Helpers for the websocket tests: a gateway with the fan-out, tokens, a client that reads frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from connectors.gateway import GatewayService, GatewaySettings, build_gateway
from connectors.realtime import RealtimeSettings, mint, realtime_extension
from streams.events import Event
from streams.events.research import ResearchProgressReported
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

KEY = "test-signing-key-that-is-long-enough-for-hs256-and-even-hs512-ok!"
WAIT_S = 60.0  # generous: the box is shared


def token(channels: list[str], ttl_s: float = 3600, **kwargs: Any) -> str:
    return mint(KEY, channels, ttl_s=ttl_s, **kwargs)


def realtime_settings(**overrides: Any) -> RealtimeSettings:
    return RealtimeSettings(jwt_key=KEY, allowed_origins=("http://allowed.test",), **overrides)


@asynccontextmanager
async def running_gateway(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    catalogue: Catalogue,
    *,
    port: int = 0,
    **overrides: Any,
) -> AsyncIterator[GatewayService]:
    app = build_gateway(
        GatewaySettings(port=port),
        kafka,
        registry,
        catalogue,
        extensions=[realtime_extension(realtime_settings(**overrides))],
    )
    service = GatewayService(app, "127.0.0.1", port)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def ws_url(service: GatewayService) -> str:
    return f"http://127.0.0.1:{service.bound_port}/ws"


class WsClient:
    """A websocket client that keeps every frame it read, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def next(self, timeout: float = WAIT_S) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {message.type} {message.data!r}")
        frame: dict[str, Any] = json.loads(message.data)
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """Read frames until one of type ``kind``; returns it (all are kept in ``frames``)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if frame["type"] == kind:
                    return frame

    async def publications(self, channel: str, count: int) -> list[dict[str, Any]]:
        """Read until ``count`` publications of ``channel`` were received in total."""
        async with asyncio.timeout(WAIT_S):
            while len(self.of(channel)) < count:
                await self.next()
        return self.of(channel)

    def of(self, channel: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "publication" and f["channel"] == channel]

    async def closed_with(self, timeout: float = WAIT_S) -> int | None:
        """Read until the server closes; the close code."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    return self.ws.close_code
                if message.type is aiohttp.WSMsgType.ERROR:
                    return self.ws.close_code
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.frames.append(json.loads(message.data))


Connect = Callable[..., Awaitable[WsClient]]


@asynccontextmanager
async def ws_clients(service: GatewayService) -> AsyncIterator[Connect]:
    """``connect(token=..., origin=...)`` opens (and authenticates) clients; all closed at the end."""
    async with aiohttp.ClientSession() as session:

        async def connect(
            token_: str | None = None,
            *,
            origin: str | None = None,
            authenticate: bool = True,
            **kwargs: Any,
        ) -> WsClient:
            headers = {"Origin": origin} if origin else {}
            ws = await session.ws_connect(ws_url(service), headers=headers, **kwargs)
            client = WsClient(ws)
            if authenticate:
                await client.send(op="auth", token=token_)
            return client

        yield connect


def progress(research_id: str, n: int) -> Event:
    return ResearchProgressReported(
        research_id=research_id, percent=float(n % 100), steps_completed=n, message=f"step {n}"
    )


async def publish_all(publisher: Publisher, events: Sequence[Event]) -> None:
    for event in events:
        await publisher.publish(event)


def new_id(stem: str = "r") -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def app_of(service: GatewayService) -> web.Application:
    return service._app


class Positions:
    """What a client remembers to resume: the last position per partition of one channel."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], dict[str, Any]] = {}

    def update(self, frame: dict[str, Any]) -> None:
        if frame["type"] in ("subscribed", "positions"):
            for position in frame["positions"]:
                self.last[(position["topic"], position["partition"])] = position
        elif frame["type"] == "publication":
            position = frame["position"]
            self.last[(position["topic"], position["partition"])] = position

    def since(self) -> list[dict[str, Any]]:
        return list(self.last.values())


async def saved_past(
    read: Callable[[], Iterable[Mapping[str, Any]]], coords: Sequence[Any]
) -> None:
    """Wait until a client's saved positions cover every record at ``coords`` (``Coordinates``):
    a client saves a position after handling its record, so one stopped the moment it printed the
    last record may not have saved it yet, and would rightly see it again on resume."""

    def covered() -> bool:
        saved = list(read())
        return all(
            any(
                c.topic.endswith(str(p.get("topic")))
                and p.get("partition") == c.partition
                and int(p.get("offset", -1)) >= c.offset
                for p in saved
            )
            for c in coords
        )

    async with asyncio.timeout(90):
        while True:
            if await asyncio.to_thread(covered):
                return
            await asyncio.sleep(0.1)
