"""The headline figure: a request in over HTTP -> external call -> result -> websocket client.

``backbone up`` runs the whole stack in its own process against the run's broker (gateway with
``POST /v1/calls`` and ``GET /ws``, the call worker with a zero-latency simulated provider, the
projections, webhook delivery, alerts). A load generator in another process posts calls; one
websocket client in this process follows ``integration:sim`` and times each ``call.succeeded`` from
the moment its request was sent (carried in ``correlation_id``; same machine, same clock).

1. Maximum: closed loop at ``CONCURRENCY``; events/s = outcomes received by the websocket client
   per second (first to last receipt), so every stage must have kept up.
2. Latency at 50 % of that maximum: open loop at half the measured rate; p50/p99 of request sent
   -> outcome on the websocket. Floor: Kafka's ``EndToEndLatency`` (one produce -> consume hop).

Path today: the request enters through ``POST /v1/calls``, not a webhook; no route turns an inbound
webhook into a call yet. The metrics projection runs in the stack and its windows are published on
the same channel, but they are periodic, so per-event latency is measured on the call outcome.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._harness import (
    FLOOR_E2E_P50,
    FLOOR_E2E_P99,
    FLOOR_PRODUCE,
    Row,
    Stat,
    kafka_bootstrap,
    percentile,
    progress,
    scaled,
)
from benchmarks._jobs import JobProcess
from benchmarks._servers import TOKEN, gateway_env, serve_process
from connectors.realtime.tokens import mint
from infra.kafka.broker import free_port

CONCURRENCY = 64
SECONDS = scaled(15, 4)
WARMUP_S = scaled(3, 1)
DRAIN_S = 120
KEY = "bench-headline-key-" + "k" * 32
CHANNEL = "integration:sim"
CONFIG = """
[[calls.services]]
name = "sim"
kind = "simulated"
max_concurrency = 512
rate_limit = { rate = 1000000.0, burst = 100000 }
"""


# --- the load generator (its own process) -----------------------------------------------------


async def _post(http: aiohttp.ClientSession, url: str, phase: str) -> bool:
    body = {
        "service": "sim",
        "operation": "bench",
        "payload": {"n": 1},
        "correlation_id": f"{phase}:{time.time_ns()}",
        "idempotency_key": uuid.uuid4().hex,
    }
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        await r.read()
        return r.status == 202


async def _load(url: str, phase: str, rate: float, seconds: float) -> dict[str, float]:
    """Closed loop at CONCURRENCY when ``rate`` is 0, else open loop at ``rate`` per second."""
    accepted = refused = 0
    connector = aiohttp.TCPConnector(limit=CONCURRENCY if not rate else 0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            nonlocal accepted, refused
            try:
                ok = await _post(http, url, phase)
            except aiohttp.ClientError:
                ok = False
            accepted += ok
            refused += not ok

        began = time.perf_counter()
        if not rate:

            async def worker() -> None:
                while time.perf_counter() - began < seconds:
                    await one()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        else:
            tasks = []
            for n in range(int(rate * seconds)):
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return {"accepted": accepted, "refused": refused, "seconds": elapsed}


def _load_job(url: str, phase: str, rate: float, seconds: float) -> dict[str, float]:
    """One phase of the load generator (its own process: :class:`JobProcess`, reused)."""
    return asyncio.run(_load(url, phase, rate, seconds))


# --- the websocket client (this process) ------------------------------------------------------


class Outcomes:
    """Every ``call.succeeded`` seen on the channel, by phase: (receipt time, lag in ms)."""

    def __init__(self) -> None:
        self.by_phase: dict[str, list[tuple[float, float]]] = {}
        self.other: dict[str, int] = {}

    def add(self, frame: dict[str, Any], now: float) -> None:
        if frame.get("event_type") != "call.succeeded":
            self.other[frame.get("event_type", "?")] = (
                self.other.get(frame.get("event_type", "?"), 0) + 1
            )
            return
        phase, _, sent_ns = str(frame["payload"].get("correlation_id") or "").partition(":")
        if sent_ns.isdigit():
            lag = (now - int(sent_ns) / 1e9) * 1000
            self.by_phase.setdefault(phase, []).append((now, lag))

    def count(self, phase: str) -> int:
        return len(self.by_phase.get(phase, []))


async def _follow(url: str, token: str, outcomes: Outcomes, subscribed: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"op": "auth", "token": token}))
        await ws.send_str(json.dumps({"op": "subscribe", "channel": CHANNEL, "id": 1}))
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            frame = json.loads(message.data)
            kind = frame.get("type")
            if kind == "publication":
                outcomes.add(frame, now)
            elif kind == "subscribed":
                subscribed.set()
            elif kind in ("error", "resync_required"):
                raise RuntimeError(f"websocket: {frame}")
    raise RuntimeError("the websocket closed during the run")


async def _drain(
    outcomes: Outcomes, phase: str, expected: float, follower: asyncio.Task[None]
) -> None:
    deadline = time.monotonic() + DRAIN_S
    while outcomes.count(phase) < expected and time.monotonic() < deadline:
        if follower.done():
            follower.result()
        await asyncio.sleep(0.1)


# --- the run --------------------------------------------------------------------------------


async def _run(bootstrap: str) -> dict[str, Any]:
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="bench-headline-"))
    (state / "backbone.toml").write_text(CONFIG)
    env = gateway_env(
        bootstrap,
        port,
        f"bench-{uuid.uuid4().hex[:6]}.",
        BACKBONE_CONFIG=str(state / "backbone.toml"),
        BACKBONE_STATE_DIR=str(state),
        BACKBONE_REGISTRY_PORT=str(free_port()),
        BACKBONE_WS_JWT_KEY=KEY,
    )
    progress("headline: starting `backbone up` (gateway, worker, projections, ...)")
    load = JobProcess(_load_job)
    load.start()  # one load generator for every phase; its imports overlap the stack's start
    try:
        stack, base = await serve_process(["infra.cli", "up"], port, env, attempts=3000)
    except BaseException:
        await load.stop()
        raise
    outcomes = Outcomes()
    subscribed = asyncio.Event()
    ws_url = base.replace("http://", "ws://") + "/ws"
    follower = asyncio.create_task(
        _follow(ws_url, mint(KEY, [CHANNEL], ttl_s=3600), outcomes, subscribed)
    )
    calls = f"{base}/v1/calls"
    try:
        await asyncio.wait_for(subscribed.wait(), 60)
        progress(f"headline: warm-up at 20/s for {WARMUP_S} s, until outcomes reach the websocket")
        warm = await load.run(calls, "warm", 20, WARMUP_S)
        await _drain(outcomes, "warm", warm["accepted"], follower)
        if outcomes.count("warm") == 0:
            raise RuntimeError("no call outcome reached the websocket during the warm-up")
        progress(f"headline: maximum, closed loop x{CONCURRENCY} for {SECONDS} s")
        peak = await load.run(calls, "max", 0, SECONDS)
        await _drain(outcomes, "max", peak["accepted"], follower)
        stamps = sorted(t for t, _ in outcomes.by_phase.get("max", []))
        if len(stamps) < 2:
            raise RuntimeError(f"only {len(stamps)} outcomes of the maximum phase arrived")
        max_rate = (len(stamps) - 1) / max(1e-3, stamps[-1] - stamps[0])
        half = max(1.0, max_rate / 2)
        progress(f"headline: open loop at {half:.0f}/s (50 % of the maximum) for {SECONDS} s")
        steady = await load.run(calls, "half", half, SECONDS)
        await _drain(outcomes, "half", steady["accepted"], follower)
    finally:
        await load.stop()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        stack.terminate()  # SIGTERM: the stack stops every service
        try:
            await asyncio.wait_for(stack.wait(), 60)
        except TimeoutError:
            stack.kill()
            await stack.wait()
    lags = [lag for _, lag in outcomes.by_phase.get("half", [])]
    return {
        "max_rate": max_rate,
        "max": peak,
        "max_received": outcomes.count("max"),
        "half_rate": half,
        "half": steady,
        "half_received": len(lags),
        "lags": lags,
    }


def _report(found: dict[str, Any]) -> None:
    m, h = found["max"], found["half"]
    print(f"maximum (closed loop x{CONCURRENCY}, {SECONDS} s): {found['max_rate']:,.0f} events/s "
          f"reached the websocket; {m['accepted']:.0f} accepted, {m['refused']:.0f} refused, "
          f"{found['max_received']} outcomes received")  # fmt: skip
    if found["lags"]:
        print(f"at {found['half_rate']:,.0f}/s (50 %): p50 {percentile(found['lags'], 0.5):.1f} ms, "
              f"p99 {percentile(found['lags'], 0.99):.1f} ms request -> websocket; "
              f"{h['accepted']:.0f} accepted, {found['half_received']} received")  # fmt: skip


def _measure() -> dict[str, Any]:
    with kafka_bootstrap() as bootstrap:
        return asyncio.run(_run(bootstrap))


def rows() -> list[Row]:
    found = _measure()
    _report(found)
    if not found["lags"]:
        raise RuntimeError("no outcome of the 50 % phase reached the websocket")
    m, h = found["max"], found["half"]
    params = {"path": "POST /v1/calls -> calls.requests -> worker (simulated, 0 ms) -> "
              "calls.results -> GET /ws integration:sim", "partitions": 6, "repeats": 1,
              "warmup": f"20/s for {WARMUP_S} s", "seconds": SECONDS}  # fmt: skip
    peak = {**params, "concurrency": CONCURRENCY, "records": m["accepted"],
            "complete": round(found["max_received"] / max(1, m["accepted"]), 4)}  # fmt: skip
    half = {**params, "rate_per_s": round(found["half_rate"]), "records": h["accepted"],
            "complete": round(found["half_received"] / max(1, h["accepted"]), 4)}  # fmt: skip
    return [
        Row("headline: HTTP -> call -> ws, max", "events/s", Stat.of(found["max_rate"]),
            params=peak, floor_key=FLOOR_PRODUCE),
        Row("headline: p50 at 50 % of max", "ms", Stat.of(percentile(found["lags"], 0.5)),
            params=half, floor_key=FLOOR_E2E_P50),
        Row("headline: p99 at 50 % of max", "ms", Stat.of(percentile(found["lags"], 0.99)),
            params=half, floor_key=FLOOR_E2E_P99),
    ]  # fmt: skip


def main() -> None:
    _report(_measure())


if __name__ == "__main__":
    main()
