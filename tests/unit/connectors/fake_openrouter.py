"""A local aiohttp server imitating OpenRouter's API, with a behaviour chosen per request.

The model name picks the behaviour (``ok``, ``429``, ``500``, ``503``, ``timeout``, ``slow``,
``malformed``, ``oversized``, ``400``, ``error200``), so one server serves a whole test module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEY = "sk-or-test-secret-123"


@dataclass
class FakeOpenRouter:
    base: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    slow_s: float = 0.3


FAKE = web.AppKey("fake", FakeOpenRouter)


async def _chat(request: web.Request) -> web.StreamResponse:
    fake: FakeOpenRouter = request.app[FAKE]
    fake.auth_headers.append(request.headers.get("Authorization", ""))
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return web.json_response({"error": {"code": 401, "message": "bad key"}}, status=401)
    body = await request.json()
    fake.requests.append(body)
    model = body.get("model", "ok")
    if model == "429":
        return web.json_response({"error": {"code": 429}}, status=429, headers={"Retry-After": "7"})
    if model in ("500", "503", "400"):
        return web.json_response({"error": {"code": int(model)}}, status=int(model))
    if model == "timeout":
        await asyncio.sleep(5)
    if model == "slow":
        await asyncio.sleep(fake.slow_s)
    if model == "malformed":
        return web.Response(text='{"id": "gen-1", "choices": [', content_type="application/json")
    if model == "oversized":
        return web.Response(
            body=b'{"x": "' + b"a" * 200_000 + b'"}', content_type="application/json"
        )
    if model == "error200":
        return web.json_response({"error": {"code": 502, "message": "upstream down"}})
    return web.json_response(
        {
            "id": "gen-1",
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": "hello"}}],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "total_tokens": 15,
                "cost": 0.00042,
            },
        },
        headers={
            "x-ratelimit-limit": "100",
            "x-ratelimit-remaining": "99",
            "x-ratelimit-reset": "10",
        },
    )


async def _models(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return web.json_response({"error": "unauthorised"}, status=401)
    return web.json_response({"data": [{"id": "ok"}]})


@asynccontextmanager
async def running() -> AsyncIterator[FakeOpenRouter]:
    fake = FakeOpenRouter()
    app = web.Application()
    app[FAKE] = fake
    app.router.add_post("/api/v1/chat/completions", _chat)
    app.router.add_get("/api/v1/models", _models)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base = f"http://127.0.0.1:{port}/api/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


def chat(model: str) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
