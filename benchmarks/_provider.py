"""bench_latency's external service: an aiohttp JSON endpoint that answers at once (zero latency).

Run as ``python -m benchmarks._provider PORT``. Every ``POST`` answers ``{"at_ns": ...}``, the
wall-clock time it was handled, so the benchmark can place the provider call on a call's timeline
(the body reaches ``call.succeeded``'s ``response``). ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import sys
import time

from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"at_ns": time.time_ns()})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_post("/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[-1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
