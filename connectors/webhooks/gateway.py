"""The webhooks part of the HTTP gateway, as one extension function.

``build_gateway(..., extensions=[webhooks_extension(...)])`` adds ``POST /webhooks/{source}`` and
``/v1/webhook-endpoints``; the parts they need (a publisher, the seen-set, the endpoint registry)
start with the app and stop with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from connectors.gateway import add_check, depends_on
from connectors.webhooks._admin import EndpointAdmin
from connectors.webhooks._api import EndpointsAPI
from connectors.webhooks._ingress import WebhookIngress
from connectors.webhooks._registry import EndpointRegistry
from connectors.webhooks._seen import SeenSet, seen_key
from connectors.webhooks._ssrf import DestinationPolicy
from connectors.webhooks.settings import WebhookSettings
from streams.codec import Codec
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)

__all__ = [
    "EndpointsAPI",
    "SeenSet",
    "WebhookGateway",
    "WebhookIngress",
    "seen_key",
    "webhooks_extension",
]


class WebhookGateway:
    """Everything the webhook routes need, with one lifecycle."""

    stop_timeout_s = 10.0

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: WebhookSettings,
        *,
        owns_registry_client: bool = False,
    ) -> None:
        self._codec = codec
        self._owns_registry_client = owns_registry_client
        # ``kafka`` is the gateway's (GatewaySettings.producer: its linger, 0 by default)
        self.publisher = Publisher(kafka, codec, catalogue)
        # the accepted events carry their ids; webhooks.seen holds those of older gateways
        self.seen = SeenSet(
            kafka,
            catalogue.name("webhooks.inbound"),
            markers=catalogue.name("webhooks.seen"),
            store_dir=settings.ingress.seen_dir,
            window_s=settings.ingress.seen_window_s,
        )
        self.registry = EndpointRegistry(kafka, codec, catalogue.name("webhooks.endpoints"))
        self.ingress = WebhookIngress(settings.ingress, self.publisher, self.seen)
        self.api = EndpointsAPI(
            EndpointAdmin(
                self.publisher,
                self.registry.view,
                DestinationPolicy.allowing(settings.delivery.allow_networks),
            ),
            self.registry.view,
            settings.delivery.rotation_grace_s,
        )

    async def start(self) -> None:
        """Start everything, waiting for Kafka (the gateway uses :meth:`install` instead)."""
        await self.publisher.start()
        await self.load_views()

    async def load_views(self) -> None:
        """Read the seen-set and the endpoint registry (needs Kafka)."""
        await self.seen.start()
        try:
            await self.registry.start()
        except BaseException:
            await self.seen.stop()
            raise

    async def unload_views(self) -> None:
        await self.registry.stop()
        await self.seen.stop()

    async def stop(self) -> None:
        await self.unload_views()
        await self._stop_publishers()

    async def _stop_publishers(self) -> None:
        try:
            # with the cluster gone, aiokafka's stop() keeps retrying the unacknowledged records
            # forever; those requests were answered 503, so giving up on them loses nothing
            await asyncio.wait_for(self.publisher.stop(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("publisher did not flush within %.0f s; abandoned", self.stop_timeout_s)
        if self._owns_registry_client:
            await self._codec.registry.close()

    def install(self, app: web.Application) -> None:
        """Routes plus lifecycle. Starts while Kafka is down: the webhook routes answer 503 (with
        Retry-After) until the seen-set and endpoint registry are loaded."""
        self.ingress.install(app)
        self.api.install(app)

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await self.publisher.start(wait=False)
            add_check(app, "webhooks publisher", self.publisher.problem)
            try:
                yield
            finally:
                await self._stop_publishers()

        app.cleanup_ctx.append(lifecycle)
        depends_on(
            app,
            "webhook seen-set and endpoints",
            self.load_views,
            self.unload_views,
            ("/webhooks/", "/v1/webhook-endpoints"),
        )


def webhooks_extension(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    catalogue: Catalogue,
    settings: WebhookSettings,
) -> Callable[[web.Application], None]:
    """For ``build_gateway(..., extensions=[...])``: the routes, with their own registry client."""
    codec = Codec(RegistryClient(registry))
    return WebhookGateway(kafka, codec, catalogue, settings, owns_registry_client=True).install
