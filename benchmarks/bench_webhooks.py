"""Webhooks in and out, each against a baseline measured in the same run.

Inbound: verified webhooks through ``POST /webhooks/{source}`` (signature check on the raw body,
replay check, ``webhook.received`` (its own seen-marker) acknowledged by Kafka) at a fixed offered rate
(open loop, target p99 < 20 ms at 500 req/s), and the maximum rate at fixed concurrency.
Baseline: a bare aiohttp handler that reads the body and answers 202 (no verification, no Kafka).

Outbound: delivery requests queued on ``webhooks.deliveries``, then the delivery worker signs,
sends to a local receiver, and records attempt + outcome events (target >= 1,000/s). Baseline: a
raw aiohttp client POST loop to the same receiver at the same concurrency (no signing, no Kafka).

The load generator, the receiver, the bare baseline and ``backbone gateway`` (the real deployment:
webhook routes as a gateway extension) each run in their own process, as in bench_sdk, so nothing
else shares the event loop of the server under test (the machine has 2 cores, which all of it
shares).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Literal

import aiohttp
from aiohttp import web

from agents.webhooks import WebhookDeliveryService
from benchmarks._harness import Row, Stat, kafka_bootstrap, progress, scaled
from benchmarks._servers import serve_process
from connectors.webhooks import DestinationPolicy, WebhookSecret, signed_headers
from connectors.webhooks.registry import EndpointAdmin, EndpointView
from connectors.webhooks.settings import (
    DeliverySettings,
)
from infra.kafka.broker import free_port
from infra.registry import RegistryServer
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.events.webhooks import WebhookDeliveryRequested
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RATE = 500  # offered inbound requests per second (the target)
LOW_RATE = 200  # a second, lighter run: the latency floor when not near saturation
SECONDS = scaled(8, 3)
CONCURRENCY = 32
MAX_REQUESTS = scaled(4000, 1000)
DELIVERIES = scaled(5000, 1000)
BODY = b'{"type": "invoice.paid", "data": {"id": "in_1", "amount": 4200, "currency": "eur"}}'


# --- processes: load generator and receiver --------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _open_loop(url: str, secret: str, rate: int, seconds: int) -> dict[str, float]:
    """Send at a fixed rate regardless of answers (no coordinated omission)."""
    key = WebhookSecret.parse(secret)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> None:
            nonlocal errors
            headers = signed_headers([key], f"msg_{uuid.uuid4().hex}", BODY)
            start = time.perf_counter()
            async with http.post(url, data=BODY, headers=headers) as r:
                await r.read()
                if r.status >= 300:
                    errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

        tasks = []
        begin = time.perf_counter()
        for n in range(rate * seconds):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    return {
        "sent": len(latencies) / elapsed,
        "p50": _pct(latencies, 0.50),
        "p99": _pct(latencies, 0.99),
        "errors": errors,
    }


async def _closed_loop(url: str, secret: str, total: int, concurrency: int) -> dict[str, float]:
    key = WebhookSecret.parse(secret)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def worker(count: int) -> None:
            nonlocal errors
            for _ in range(count):
                headers = signed_headers([key], f"msg_{uuid.uuid4().hex}", BODY)
                start = time.perf_counter()
                async with http.post(url, data=BODY, headers=headers) as r:
                    await r.read()
                    errors += r.status >= 300
                latencies.append((time.perf_counter() - start) * 1000)

        begin = time.perf_counter()
        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return {
        "rps": len(latencies) / elapsed,
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "errors": errors,
    }


def _load_process(conn: Connection, mode: str, url: str, secret: str) -> None:
    if mode == "open":
        conn.send(asyncio.run(_open_loop(url, secret, RATE, SECONDS)))
    elif mode == "warm":
        conn.send(asyncio.run(_open_loop(url, secret, LOW_RATE, 2)))
    elif mode == "low":
        conn.send(asyncio.run(_open_loop(url, secret, LOW_RATE, SECONDS)))
    else:
        conn.send(asyncio.run(_closed_loop(url, secret, MAX_REQUESTS, CONCURRENCY)))


def _receiver_process(conn: Connection) -> None:
    async def serve() -> None:
        count = 0

        async def hook(request: web.Request) -> web.Response:
            nonlocal count
            await request.read()
            count += 1
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.to_thread(conn.recv)  # any message: stop
        conn.send(count)
        await runner.cleanup()

    asyncio.run(serve())


def _in_process(target: Callable[..., None], *args: Any) -> tuple[Any, Connection]:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    return proc, parent


async def _load(mode: str, url: str, secret: str) -> dict[str, float]:
    proc, conn = _in_process(_load_process, mode, url, secret)
    result: dict[str, float] = await asyncio.to_thread(conn.recv)
    proc.join(10)
    return result


# --- inbound ----------------------------------------------------------------------------------


async def _serve(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """A server in its own process (like a deployed gateway), ready once ``/healthz`` answers."""
    port = free_port()
    return await serve_process([*args, "--port", str(port)], port, {**os.environ, **env})


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()  # SIGTERM: the gateway drains and stops its producers
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _runs(url: str, secret: str) -> dict[str, dict[str, float]]:
    progress(f"webhooks: inbound at {url}: warm-up, {RATE}/s, {LOW_RATE}/s, closed loop")
    await _load("warm", url, secret)
    result = {"open": await _load("open", url, secret)}
    result["low"] = await _load("low", url, secret)
    result["closed"] = await _load("closed", url, secret)
    return result


async def _inbound(
    kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue
) -> dict[str, Any]:
    """Baseline and ``backbone gateway`` each in their own process, as bench_sdk does."""
    secret = WebhookSecret.generate().reveal()
    proc, base = await _serve(["benchmarks._null_http"], {})
    try:
        baseline = await _runs(f"{base}/webhooks/bench", secret)
    finally:
        await _stop(proc)
    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_WEBHOOK_SOURCES": json.dumps({"bench": {"secrets": [secret]}}),
    }
    proc, base = await _serve(["infra.cli", "gateway"], env)
    try:
        ours = await _runs(f"{base}/webhooks/bench", secret)
    finally:
        await _stop(proc)
    return {"baseline": baseline, "webhooks": ours}


# --- outbound ---------------------------------------------------------------------------------


async def _raw_posts(url: str, total: int, concurrency: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with http.post(url, data=BODY) as r:
                    await r.read()

        begin = time.perf_counter()
        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
        sent = (total // concurrency) * concurrency  # what the workers sent, not total
        return sent / (time.perf_counter() - begin)


async def _worker_rate(
    kafka: KafkaSettings, codec: Codec, url: str, runtime: Literal["faust", "aiokafka"]
) -> tuple[float, int]:
    """Deliveries/s of one runtime: requests queued first, then the worker started and timed."""
    catalogue = Catalogue(prefix=f"bench-{runtime}-{uuid.uuid4().hex[:6]}.")
    await apply_catalogue(kafka, catalogue, serving=True)
    settings = DeliverySettings(
        allow_networks=("127.0.0.0/8",),
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        concurrency=256,
        runtime=runtime,
    )
    async with Publisher(kafka, codec, catalogue) as publisher:
        # the receiver listens on loopback: registration applies the worker's allow-list too
        policy = DestinationPolicy.allowing(settings.allow_networks)
        endpoint, _ = await EndpointAdmin(publisher, EndpointView(), policy).register(url)
        requests = [
            WebhookDeliveryRequested(
                delivery_id=f"msg_{uuid.uuid4().hex}",
                endpoint_id=endpoint.endpoint_id,
                delivered_event_type="call.succeeded",
                delivered_event_id=str(uuid.uuid4()),
                payload=BODY.decode(),
            )
            for _ in range(DELIVERIES)
        ]
        await publisher.publish_many(requests, topic="webhooks.deliveries")
    service = WebhookDeliveryService(kafka, codec, catalogue, settings, fanout=False)
    begin = time.perf_counter()
    await service.start()
    try:
        while service.worker.delivered < DELIVERIES:
            if time.perf_counter() - begin > 120:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - begin
        delivered = service.worker.delivered
    finally:
        await service.stop()
    return delivered / elapsed, delivered


async def _outbound(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> dict[str, float]:
    proc, conn = _in_process(_receiver_process)
    port = await asyncio.to_thread(conn.recv)
    url = f"http://127.0.0.1:{port}/hook"
    try:
        baseline = await _raw_posts(url, DELIVERIES, 256)
        faust_rate, faust_n = await _worker_rate(kafka, codec, url, "faust")
        aiokafka_rate, aiokafka_n = await _worker_rate(kafka, codec, url, "aiokafka")
    finally:
        conn.send("stop")
        received = await asyncio.to_thread(conn.recv)
        proc.join(10)
    return {
        "baseline": baseline,
        "webhooks": faust_rate,
        "delivered": faust_n,
        "aiokafka": aiokafka_rate,
        "aiokafka_delivered": aiokafka_n,
        "received": received,
    }


def _report(inbound: dict[str, Any], outbound: dict[str, float]) -> None:
    b, w = inbound["baseline"], inbound["webhooks"]
    print(f"inbound, open loop at {RATE} req/s for {SECONDS} s:")
    for name, r in (("bare aiohttp handler", b["open"]), ("verified webhooks", w["open"])):
        print(
            f"  {name:<22} {r['sent']:7.0f} req/s  p50 {r['p50']:6.2f} ms  "
            f"p99 {r['p99']:6.2f} ms  errors {r['errors']:.0f}"
        )
    print(f"  p99 target < 20 ms: {'met' if w['open']['p99'] < 20 else 'NOT met'}")
    print(f"inbound, open loop at {LOW_RATE} req/s for {SECONDS} s:")
    for name, r in (("bare aiohttp handler", b["low"]), ("verified webhooks", w["low"])):
        print(
            f"  {name:<22} {r['sent']:7.0f} req/s  p50 {r['p50']:6.2f} ms  "
            f"p99 {r['p99']:6.2f} ms  errors {r['errors']:.0f}"
        )
    print(f"inbound, closed loop, concurrency {CONCURRENCY}, {MAX_REQUESTS} requests:")
    for name, r in (("bare aiohttp handler", b["closed"]), ("verified webhooks", w["closed"])):
        print(
            f"  {name:<22} {r['rps']:7.0f} req/s  p50 {r['p50']:6.2f} ms  "
            f"p99 {r['p99']:6.2f} ms  errors {r['errors']:.0f}"
        )
    print(f"  ratio webhooks/bare: {w['closed']['rps'] / b['closed']['rps']:.2f}")
    print(f"outbound, {DELIVERIES} deliveries to a local receiver:")
    print(f"  raw aiohttp POST loop  {outbound['baseline']:7.0f} posts/s")
    print(
        f"  worker, faust agents   {outbound['webhooks']:7.0f} deliveries/s "
        f"({outbound['delivered']:.0f} delivered)"
    )
    print(
        f"  worker, aiokafka stage {outbound['aiokafka']:7.0f} deliveries/s "
        f"({outbound['aiokafka_delivered']:.0f} delivered)"
    )
    print(f"  receiver counted {outbound['received']:.0f} requests in all")
    print(f"  ratio faust worker/raw: {outbound['webhooks'] / outbound['baseline']:.2f}")
    print(f"  ratio aiokafka worker/raw: {outbound['aiokafka'] / outbound['baseline']:.2f}")
    default = outbound["aiokafka"]  # the default runtime
    print(
        f"  target >= 1,000/s (default runtime, aiokafka): {'met' if default >= 1000 else 'NOT met'}"
    )


def _measure() -> tuple[dict[str, Any], dict[str, float]]:
    with kafka_bootstrap() as bootstrap:
        kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-webhooks")
        server = RegistryServer(kafka, topic=f"bench-{uuid.uuid4().hex[:6]}._schemas", port=0)

        async def run() -> tuple[dict[str, Any], dict[str, float]]:
            await server.start()
            try:
                catalogue = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
                await apply_catalogue(kafka, catalogue, serving=True)
                async with RegistryClient(RegistrySettings(url=server.url)) as client:
                    codec = Codec(client)
                    inbound = await _inbound(kafka, RegistrySettings(url=server.url), catalogue)
                    outbound = await _outbound(kafka, codec, catalogue)
                return inbound, outbound
            finally:
                await server.stop()

        return asyncio.run(run())


def rows() -> list[Row]:
    inbound, outbound = _measure()
    _report(inbound, outbound)
    b, w = inbound["baseline"], inbound["webhooks"]
    opened = {"rate_per_s": RATE, "seconds": SECONDS, "repeats": 1, "warmup": f"{LOW_RATE}/s for 2 s",
              "body_bytes": len(BODY), "partitions": 6}  # fmt: skip
    closed = {"requests": MAX_REQUESTS, "concurrency": CONCURRENCY, "repeats": 1, "warmup": 0,
              "body_bytes": len(BODY)}  # fmt: skip
    out = {"deliveries": DELIVERIES, "concurrency": 256, "repeats": 1, "warmup": 0,
           "body_bytes": len(BODY)}  # fmt: skip
    return [
        Row(f"webhooks in: p99 at {RATE}/s", "ms", Stat.of(w["open"]["p99"]),
            Stat.of(b["open"]["p99"]), "bare aiohttp 202", opened, target="p99 < 20 ms"),
        Row("webhooks in: max (closed loop)", "req/s", Stat.of(w["closed"]["rps"]),
            Stat.of(b["closed"]["rps"]), "bare aiohttp 202", closed),
        Row("webhooks out: deliveries (aiokafka runtime)", "deliveries/s",
            Stat.of(outbound["aiokafka"]), Stat.of(outbound["baseline"]), "raw aiohttp POSTs",
            out, target=">= 1,000/s"),
        Row("webhooks out: deliveries (faust runtime)", "deliveries/s",
            Stat.of(outbound["webhooks"]), Stat.of(outbound["baseline"]), "raw aiohttp POSTs",
            out),
    ]  # fmt: skip


def main() -> None:
    _report(*_measure())


if __name__ == "__main__":
    main()
