"""The local stack that ``backbone up`` (and ``make run``) runs in the foreground.

A stack is the broker (unless BACKBONE_KAFKA_BOOTSTRAP names a cluster) plus a list of services
with an explicit lifecycle. Services are started in order and stopped in reverse; Ctrl-C or
SIGTERM stops everything, and the broker dies with this process even on SIGKILL.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from infra.config import Settings
from infra.kafka.broker import BrokerOptions, LocalBroker, kafka_version
from infra.registry import registry_service
from streams.admin import apply_catalogue
from streams.topics import Catalogue


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...


ServiceFactory = Callable[[Settings], Service]


def webhook_delivery(settings: Settings) -> Service:
    """Outbound webhooks: endpoint registry view, fan-out from fact topics, delivery worker."""
    from agents.webhooks import WebhookDeliveryService
    from streams.codec import Codec
    from streams.registry_client import RegistryClient

    return WebhookDeliveryService(
        settings.kafka,
        Codec(RegistryClient(settings.registry)),
        Catalogue(settings.kafka.topic_prefix),
        settings.webhooks.delivery,
        owns_registry_client=True,
    )


def webhooks_gateway_extension(settings: Settings) -> Callable[[web.Application], None]:
    """``POST /webhooks/{source}`` and ``/v1/webhook-endpoints`` for the HTTP gateway.

    ``/webhooks/`` needs no bearer token (the signature is the authentication);
    ``/v1/webhook-endpoints`` does (the gateway's auth covers every ``/v1/`` path)."""
    from connectors.webhooks.gateway import webhooks_extension

    return webhooks_extension(
        settings.kafka, settings.registry, Catalogue(settings.kafka.topic_prefix), settings.webhooks
    )


def gateway_service(settings: Settings) -> Service:
    """The HTTP gateway on ``BACKBONE_GATEWAY_HOST:PORT`` (127.0.0.1:8080 by default)."""
    from connectors.gateway import GatewayService, build_gateway

    app = build_gateway(
        settings.gateway,
        settings.kafka,
        settings.registry,
        Catalogue(settings.kafka.topic_prefix),
        extensions=gateway_extensions(settings),
    )
    return GatewayService(app, settings.gateway.host, settings.gateway.port)


def gateway_extensions(settings: Settings) -> list[Callable[[web.Application], None]]:
    """Routes other connectors add to the gateway (``/v1/calls``, ``/webhooks/...``): append here."""
    from connectors.calls_api import calls_extension
    from connectors.realtime import realtime_extension

    return [
        calls_extension(settings.kafka, settings.registry, Catalogue(settings.kafka.topic_prefix)),
        webhooks_gateway_extension(settings),
        realtime_extension(settings.realtime),
    ]


def worker_service(settings: Settings) -> Service:
    """The call agents (``backbone worker``); imported here lazily because it pulls in Faust."""
    from infra.worker import WorkerService

    return WorkerService(settings)


#: What `backbone up` runs besides the broker; later layers append their factories here.
SERVICES: list[ServiceFactory] = [
    registry_service,
    gateway_service,
    worker_service,
    webhook_delivery,
]


async def serve(settings: Settings, say: Callable[[str], None]) -> None:
    broker: LocalBroker | None = None
    started: list[Service] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not settings.external_kafka:
            broker = LocalBroker(
                BrokerOptions(
                    port=settings.local.kafka_port,
                    heap=settings.local.kafka_heap,
                    data_dir=(settings.local.state_dir / "kafka").resolve(),
                )
            )
            seconds = await asyncio.to_thread(broker.start)
            say(
                f"kafka     {broker.bootstrap} (Apache Kafka {kafka_version()}, up in {seconds:.1f} s)"
            )
        report = await apply_catalogue(settings.kafka, Catalogue(settings.kafka.topic_prefix))
        say(f"topics    {len(report.created)} created, {len(report.unchanged)} unchanged")
        for factory in SERVICES:
            service = factory(settings)
            await service.start()
            started.append(service)
            say(f"{service.name:<9} {service.describe()}")
        say("ready; Ctrl-C stops everything")
        await stop.wait()
    finally:
        for service in reversed(started):
            await service.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        say("stopped")
