"""bench_fanout's baseline: a bare aiohttp websocket broadcast of the same frames, no Kafka.

Run as ``python -m benchmarks._ws_broadcast PORT``. It speaks just enough of the ``GET /ws``
protocol for the benchmark's clients (``auth`` -> ``authenticated``, ``subscribe`` -> ``subscribed``,
no token check) and, on ``POST /broadcast {"rate": r, "total": n, "body": s}``, sends ``n``
publication frames at ``r`` per second to every connected client: each frame built once, stamped
with ``occurred_at`` = when it was due on that schedule, sent as the same text frame to all.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

CLIENTS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("clients", set)
TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("tasks", set)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            break
        op = json.loads(message.data).get("op")
        if op == "auth":
            await ws.send_str(json.dumps({"type": "authenticated"}))
        elif op == "subscribe":
            await ws.send_str(json.dumps({"type": "subscribed", "id": 1, "positions": []}))
            request.app[CLIENTS].add(ws)
    request.app[CLIENTS].discard(ws)
    return ws


def _frame(n: int, body: str, occurred_at: float) -> bytes:
    payload = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.fromtimestamp(occurred_at, UTC).isoformat(),
        "room": "bench",
        "author": "bench",
        "kind": "message",
        "body": body,
    }
    frame = {
        "type": "publication",
        "channel": "collab:bench",
        "event_type": "collab.message_posted",
        "event_id": payload["event_id"],
        "position": {"topic": "none", "partition": 0, "offset": n, "epoch": "none"},
        "payload": payload,
    }
    return json.dumps(frame, separators=(",", ":")).encode()


async def _broadcast(
    clients: set[web.WebSocketResponse], rate: float, total: int, body: str
) -> None:
    began, began_wall = time.perf_counter(), time.time()
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # stamped with when it was due, so that a broadcast falling behind its schedule shows
        # in the lag (as the gateway's does: the benchmark's producer stamps each event on time)
        frame = _frame(n, body, began_wall + n / rate)
        for ws in list(clients):
            if not ws.closed:
                await ws.send_frame(frame, WSMsgType.TEXT)


async def broadcast(request: web.Request) -> web.Response:
    spec = await request.json()
    task = asyncio.create_task(
        _broadcast(request.app[CLIENTS], float(spec["rate"]), int(spec["total"]), str(spec["body"]))
    )
    request.app[TASKS].add(task)
    task.add_done_callback(request.app[TASKS].discard)
    return web.json_response({"clients": len(request.app[CLIENTS])})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app[CLIENTS] = set()
    app[TASKS] = set()
    app.router.add_get("/ws", websocket)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[-1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
