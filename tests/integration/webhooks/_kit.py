"""Helpers for the webhook integration tests: a running gateway app, reading topics back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.webhooks import WebhookSecret
from connectors.webhooks.gateway import WebhookGateway
from connectors.webhooks.settings import (
    DeliverySettings,
    InboundSource,
    IngressSettings,
    WebhookSettings,
)
from streams.admin import partitions
from streams.codec import Codec
from streams.events import Event
from streams.events.webhooks import WebhookDeliveryDeadLettered
from streams.settings import KafkaSettings
from streams.topics import Catalogue

PARTNER_SECRET = WebhookSecret.generate()
GITHUB_SECRET = "gh-shared-secret"


def ingress_settings(
    max_body_bytes: int = 64 * 1024, ack_timeout_s: float = 5.0
) -> WebhookSettings:
    from pydantic import SecretStr

    return WebhookSettings(
        ingress=IngressSettings(
            sources={
                "partner": InboundSource(secrets=(SecretStr(PARTNER_SECRET.reveal()),)),
                "gh": InboundSource(scheme="github", secrets=(SecretStr(GITHUB_SECRET),)),
            },
            max_body_bytes=max_body_bytes,
            ack_timeout_s=ack_timeout_s,
        ),
        delivery=DeliverySettings(),
    )


@contextlib.asynccontextmanager
async def running_gateway(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, settings: WebhookSettings
) -> AsyncIterator[tuple[str, WebhookGateway]]:
    """The webhook routes on a plain aiohttp app (as ``build_gateway(extensions=[...])`` does)."""
    gateway = WebhookGateway(kafka, codec, catalogue, settings)
    app = web.Application()
    gateway.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", gateway
    finally:
        await runner.cleanup()


async def read_all(
    kafka: KafkaSettings, codec: Codec, topic: str
) -> list[tuple[bytes | None, Event, dict[str, bytes]]]:
    """Every record of ``topic`` up to its current end, decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",  # agrees with seek_to_beginning (aiokafka reset race)
    )
    await consumer.start()
    try:
        found = await partitions(kafka, [topic])
        tps = [TopicPartition(topic, p) for p in found[topic]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for r in batch.get(tp, []):
                    out.append((r.key, await codec.decode(r.value or b""), dict(r.headers)))
        return out
    finally:
        await consumer.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def dead_letters(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> list[tuple[WebhookDeliveryDeadLettered, dict[str, bytes]]]:
    """Every webhook dead letter so far, with its record headers."""
    rows = await read_all(kafka, codec, catalogue.name("webhooks.deliveries.dlt"))
    return [(e, h) for _, e, h in rows if isinstance(e, WebhookDeliveryDeadLettered)]


async def wait_dead_letters(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, n: int, timeout: float = 20
) -> list[WebhookDeliveryDeadLettered]:
    deadline = time.monotonic() + timeout
    while len(found := await dead_letters(kafka, codec, catalogue)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} dead letters, found {len(found)}")
        await asyncio.sleep(0.2)
    return [e for e, _ in found]
