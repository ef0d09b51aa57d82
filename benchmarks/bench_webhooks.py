"""Outbound webhook delivery against a baseline measured in the same run.

Delivery requests queued on ``webhooks.deliveries``, then the delivery worker (aiokafka stage, the
default runtime, and Faust agents) signs, sends to a local receiver, and records attempt + outcome
events (target >= 1,000/s). Baseline: a raw aiohttp client POST loop to the same receiver at the
same concurrency (no signing, no Kafka). The receiver runs in its own process.

Inbound webhooks (``POST /webhooks/{source}``: signature, replay check, ``webhook.received``
acknowledged by Kafka) are measured by ``bench_ingest`` alone, next to ``/v1/events``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Literal

import aiohttp
from aiohttp import web

from agents.webhooks import WebhookDeliveryService
from benchmarks._harness import Row, Stat, create_catalogue_topics, kafka_bootstrap, scaled
from connectors.webhooks import DestinationPolicy
from connectors.webhooks.registry import EndpointAdmin, EndpointView
from connectors.webhooks.settings import (
    DeliverySettings,
)
from infra.registry import RegistryServer
from streams.codec import Codec
from streams.events.webhooks import WebhookDeliveryRequested
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

DELIVERIES = scaled(5000, 1000)
#: the delivery worker's topics (each runtime gets fresh ones)
TOPICS = ("webhooks.", "backbone.undecodable", "plugins.lifecycle")
BODY = b'{"type": "invoice.paid", "data": {"id": "in_1", "amount": 4200, "currency": "eur"}}'


# --- the receiver, in its own process ---------------------------------------------------------


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
    await create_catalogue_topics(kafka, catalogue, *TOPICS)
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


async def _outbound(kafka: KafkaSettings, codec: Codec) -> dict[str, float]:
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


def _report(outbound: dict[str, float]) -> None:
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


def _measure() -> dict[str, float]:
    with kafka_bootstrap() as bootstrap:
        kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-webhooks")
        server = RegistryServer(kafka, topic=f"bench-{uuid.uuid4().hex[:6]}._schemas", port=0)

        async def run() -> dict[str, float]:
            await server.start()
            try:
                async with RegistryClient(RegistrySettings(url=server.url)) as client:
                    return await _outbound(kafka, Codec(client))
            finally:
                await server.stop()

        return asyncio.run(run())


def rows() -> list[Row]:
    outbound = _measure()
    _report(outbound)
    out = {"deliveries": DELIVERIES, "concurrency": 256, "repeats": 1, "warmup": 0,
           "body_bytes": len(BODY)}  # fmt: skip
    return [
        Row("webhooks out: deliveries (aiokafka runtime)", "deliveries/s",
            Stat.of(outbound["aiokafka"]), Stat.of(outbound["baseline"]), "raw aiohttp POSTs",
            out, target=">= 1,000/s"),
        Row("webhooks out: deliveries (faust runtime)", "deliveries/s",
            Stat.of(outbound["webhooks"]), Stat.of(outbound["baseline"]), "raw aiohttp POSTs",
            out),
    ]  # fmt: skip


def main() -> None:
    _report(_measure())


if __name__ == "__main__":
    main()
