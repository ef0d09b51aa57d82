"""``GET /ws`` (the websocket fan-out) and ``GET /`` (the live dashboard) on the gateway."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.gateway import CATALOGUE, KAFKA, OPENAPI_PATHS, REGISTRY_CLIENT, problem
from connectors.realtime._connection import Connection
from connectors.realtime._fanout import FanOut
from connectors.realtime.protocol import CloseCode
from connectors.realtime.settings import RealtimeSettings
from streams.codec import Codec

STATIC = Path(__file__).parent / "static"

REALTIME_SETTINGS = web.AppKey("backbone.realtime_settings", RealtimeSettings)
FANOUT = web.AppKey("backbone.realtime_fanout", FanOut)
CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("backbone.realtime_connections")
TOKENS_IN_USE: web.AppKey[Counter[str]] = web.AppKey("backbone.realtime_tokens")
#: How many connections this gateway closed, per close code.
CLOSES: web.AppKey[Counter[int]] = web.AppKey("backbone.realtime_closes")


async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[REALTIME_SETTINGS]
    origin = request.headers.get("Origin")
    same_origin = origin in (f"http://{request.host}", f"https://{request.host}")
    if not same_origin and not settings.origin_allowed(origin):
        return problem(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
    ws = web.WebSocketResponse(
        autoping=False,  # pings and pongs reach Connection, which judges liveness itself
        max_msg_size=settings.max_frame_bytes,
        compress=False,  # compressing would cost per client what serialising once saves
        timeout=5.0,
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client left during the handshake
        return ws
    _bound_kernel_buffer(transport, settings.socket_send_buffer_bytes)
    connection = Connection(
        ws,
        transport,
        request.writer.drain,
        request.app[FANOUT],
        settings,
        request.app[TOKENS_IN_USE],
        request.app[CLOSES],
    )
    request.app[CONNECTIONS].add(connection)
    try:
        await connection.serve()
    finally:
        request.app[CONNECTIONS].discard(connection)
    return ws


def _bound_kernel_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """A slow client's backlog then sits in the send queue, where it is counted and cut (4008),
    not in megabytes of kernel memory the process cannot see."""
    sock = transport.get_extra_info("socket")
    if size and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def realtime_extension(settings: RealtimeSettings) -> Callable[[web.Application], None]:
    """The gateway extension: add it to ``build_gateway(..., extensions=[...])``."""

    def extend(app: web.Application) -> None:
        app[REALTIME_SETTINGS] = settings
        app[CONNECTIONS] = set()
        app[TOKENS_IN_USE] = Counter()
        app[CLOSES] = Counter()
        app.cleanup_ctx.append(_fanout_lifecycle)
        app.on_shutdown.append(_close_connections)
        app.router.add_get("/ws", websocket)
        app.router.add_get("/", dashboard)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.setdefault(OPENAPI_PATHS, {}).update(OPENAPI)

    return extend


_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
#: What ``/openapi.json`` says about these routes (the protocol itself is in docs/realtime.md).
OPENAPI: dict[str, Any] = {
    "/ws": {
        "get": {
            "operationId": "websocket",
            "summary": "The websocket fan-out: authenticate with a JWT, subscribe to channels, "
            "resume from a position (protocol and close codes: docs/realtime.md)",
            "security": [],
            "responses": {
                "101": {"description": "switching to the websocket protocol"},
                "400": {"description": "not a websocket handshake", "content": _ERROR_BODY},
                "403": {"description": "`Origin` is not allowed", "content": _ERROR_BODY},
            },
        }
    },
    "/": {
        "get": {
            "operationId": "dashboard",
            "summary": "The live integration dashboard (HTML, fed by `/ws`)",
            "security": [],
            "responses": {
                "200": {"description": "the page", "content": {"text/html": {"schema": {}}}}
            },
        }
    },
}


async def _fanout_lifecycle(app: web.Application) -> AsyncIterator[None]:
    connections = app[CONNECTIONS]

    def failed(exc: BaseException) -> None:
        for connection in list(connections):
            connection.close_soon(CloseCode.FANOUT_STOPPED, "fan-out stopped; reconnect")

    fanout = FanOut(app[KAFKA], Codec(app[REGISTRY_CLIENT]), app[CATALOGUE], on_failure=failed)
    await fanout.start()
    app[FANOUT] = fanout
    try:
        yield
    finally:
        await fanout.stop()


async def _close_connections(app: web.Application) -> None:
    connections = [*app[CONNECTIONS]]
    for connection in connections:
        connection.close_soon(CloseCode.GOING_AWAY, "server shutting down")
    for connection in connections:
        await connection.wait_closed()
