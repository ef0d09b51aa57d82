"""The baseline of bench_realtime: a bare aiohttp websocket broadcast of the same frames, no Kafka.

``python -m benchmarks._ws_baseline PORT RATE SECONDS``: clients connect to ``/ws``; after
``/start`` it broadcasts RATE frames a second for SECONDS, serialised once, shaped like ours.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import WSMsgType, web

CLIENTS: set[web.WebSocketResponse] = set()


async def ws(request: web.Request) -> web.WebSocketResponse:
    sock = web.WebSocketResponse(compress=False)
    await sock.prepare(request)
    CLIENTS.add(sock)
    try:
        async for _ in sock:
            pass
    finally:
        CLIENTS.discard(sock)
    return sock


async def start(request: web.Request) -> web.Response:
    rate, seconds = float(sys.argv[2]), float(sys.argv[3])
    asyncio.get_running_loop().create_task(_broadcast(rate, seconds))
    return web.json_response({"ok": True})


async def _broadcast(rate: float, seconds: float) -> None:
    begin = time.perf_counter()
    for seq in range(int(rate * seconds)):
        due = begin + seq / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        frame = json.dumps(
            {
                "type": "publication",
                "channel": "collab:bench",
                "payload": {"body": f"{time.time()}:{seq}"},
            }
        ).encode()
        for client in list(CLIENTS):
            try:
                await client.send_frame(frame, WSMsgType.TEXT)
            except Exception:  # a client gone away
                CLIENTS.discard(client)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/start", start)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
