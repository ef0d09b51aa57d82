from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest


@dataclass
class Canary:
    """A loopback TCP listener that only counts connections: proof that nothing reached it."""

    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    bird = Canary(port=0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bird.connections += 1
        writer.close()

    v4 = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    bird.port = v4.sockets[0].getsockname()[1]
    bird.servers.append(v4)
    with contextlib.suppress(OSError):  # no IPv6 loopback here: the v4 canary still counts
        bird.servers.append(await asyncio.start_server(on_connect, "::1", bird.port))
    try:
        yield bird
    finally:
        for server in bird.servers:
            server.close()
            await server.wait_closed()
