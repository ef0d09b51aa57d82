"""The HTTP baseline for bench_ingest: the same aiohttp stack answering 202 without Kafka.

Run as ``python -m benchmarks._null_http [--port] PORT``; it parses the JSON body like the gateway does,
so the difference to the gateway is validation, encoding and the wait for Kafka's ack. It runs
on the gateway's event loop (uvloop unless ``BACKBONE_GATEWAY_EVENT_LOOP=asyncio``).
"""

from __future__ import annotations

import os
import sys

from aiohttp import web


async def accept_webhook(request: web.Request) -> web.Response:
    """The webhooks baseline: read the raw body, answer 202 (no verification, no Kafka)."""
    await request.read()
    return web.json_response({"status": "accepted"}, status=202)


async def accept(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"event_id": body.get("call_id"), "offset": 0}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/events/{event_type}", accept)
    app.router.add_post("/webhooks/{source}", accept_webhook)
    app.router.add_get("/healthz", lambda request: accept_health())
    try:  # the event loop the gateway runs on (BACKBONE_GATEWAY_EVENT_LOOP), for a fair baseline
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = (
            None
            if os.environ.get("BACKBONE_GATEWAY_EVENT_LOOP") == "asyncio"
            else uvloop.new_event_loop()
        )
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[-1]), access_log=None, print=None, loop=loop
    )


async def accept_health() -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    main()
