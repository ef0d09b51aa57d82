"""``GET /healthz`` (the process answers) and ``GET /readyz`` (a write can be acknowledged now)."""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

from connectors.gateway._keys import KAFKA, PUBLISHER, REGISTRY, REGISTRY_CLIENT, SETTINGS
from connectors.gateway._readiness import READINESS
from streams.admin import admin_client
from streams.errors import BackboneError


async def healthz(request: web.Request) -> web.Response:
    # the pid says which process answered when several share the port (BACKBONE_GATEWAY_WORKERS)
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def _kafka_ok(request: web.Request) -> str | None:
    publisher = request.app.get(PUBLISHER)
    if publisher is not None:  # the gateway's own producer: can it reach the cluster now?
        return await publisher.probe()
    try:
        async with admin_client(request.app[KAFKA]) as admin:
            await admin.describe_cluster()
    except (BackboneError, OSError) as exc:
        return str(exc)
    except Exception as exc:  # a probe reports; it never crashes the handler
        return f"{type(exc).__name__}: {exc}"
    return None


async def _registry_ok(request: web.Request) -> str | None:
    try:
        await request.app[REGISTRY_CLIENT].subjects()
    except BackboneError as exc:
        return f"{request.app[REGISTRY].url}: {exc}"
    return None


async def _probe(name: str, check: asyncio.Task[str | None], timeout: float) -> dict[str, object]:
    began = time.perf_counter()
    try:
        problem = await asyncio.wait_for(check, timeout)
    except TimeoutError:
        problem = f"no answer within {timeout:.1f} s"
    return {
        "name": name,
        "ok": problem is None,
        "detail": problem or "reachable",
        "ms": round((time.perf_counter() - began) * 1000, 1),
    }


def _reported(name: str, problem: str | None) -> dict[str, object]:
    return {"name": name, "ok": problem is None, "detail": problem or "ready", "ms": 0.0}


async def readyz(request: web.Request) -> web.Response:
    timeout = request.app[SETTINGS].readiness_timeout_s
    checks = list(
        await asyncio.gather(
            _probe("kafka", asyncio.create_task(_kafka_ok(request)), timeout),
            _probe("registry", asyncio.create_task(_registry_ok(request)), timeout),
        )
    )
    readiness = request.app[READINESS]
    checks += [_reported(name, check()) for name, check in readiness.checks]
    checks += [_reported(d.name, d.problem()) for d in readiness.dependencies]
    ready = all(c["ok"] for c in checks)
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
