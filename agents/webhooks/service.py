"""The outbound webhook service ``backbone up`` runs: registry view, fan-out and delivery worker."""

from __future__ import annotations

from agents.webhooks._fanout import Fanout
from agents.webhooks._worker import DeliveryWorker
from connectors.webhooks.registry import EndpointRegistry
from connectors.webhooks.settings import DeliverySettings
from streams.codec import Codec
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue


class WebhookDeliveryService:
    name = "webhooks"

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: DeliverySettings,
        *,
        fanout: bool = True,
        owns_registry_client: bool = False,
    ) -> None:
        self._codec = codec
        self._owns_registry_client = owns_registry_client
        self.publisher = Publisher(kafka, codec, catalogue)
        self.registry = EndpointRegistry(kafka, codec, catalogue.name("webhooks.endpoints"))
        runtime = DeliveryWorker
        if settings.runtime == "faust":
            from agents.webhooks._faust_worker import FaustDeliveryWorker  # only when chosen

            runtime = FaustDeliveryWorker
        self.worker = runtime(kafka, codec, catalogue, settings, self.registry.view, self.publisher)
        self.fanout = (
            Fanout(
                kafka,
                codec,
                catalogue,
                settings.source_topics,
                f"{settings.group_id}-fanout",
                self.registry.view,
                self.publisher,
            )
            if fanout
            else None
        )

    async def start(self) -> None:
        await self.publisher.start()
        await self.registry.start()  # caught up before the first delivery is looked at
        await self.worker.start()
        if self.fanout is not None:
            await self.fanout.start()

    async def stop(self) -> None:
        if self.fanout is not None:
            await self.fanout.stop()
        await self.worker.stop()
        await self.registry.stop()
        await self.publisher.stop()
        if self._owns_registry_client:
            await self._codec.registry.close()

    def describe(self) -> str:
        endpoints = len(self.registry.view.endpoints)
        return f"{self.worker.describe()}; {endpoints} endpoints"
