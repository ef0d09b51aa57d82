"""Running the delivery service against the test broker, with a compressed schedule."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agents.webhooks import WebhookDeliveryService
from connectors.webhooks._ssrf import DestinationPolicy
from connectors.webhooks.registry import EndpointAdmin, EndpointView
from connectors.webhooks.settings import DeliverySettings
from streams.codec import Codec
from streams.events.webhooks import WebhookDeliveryRequested
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue

LOOPBACK = ("127.0.0.0/8",)


def delivery_settings(**overrides: object) -> DeliverySettings:
    base: dict[str, object] = {
        "retry_delays_s": (0.3, 0.3, 0.3),
        "allow_networks": LOOPBACK,
        "group_id": f"wh-{uuid.uuid4().hex[:8]}",
        "timeout_s": 5.0,
    }
    base.update(overrides)
    return DeliverySettings.model_validate(base)


@dataclass
class Outbound:
    publisher: Publisher
    admin: EndpointAdmin
    service: WebhookDeliveryService | None = None

    async def request(
        self, endpoint_id: str, payload: str = '{"type":"t"}'
    ) -> WebhookDeliveryRequested:
        event = WebhookDeliveryRequested(
            delivery_id=f"msg_{uuid.uuid4().hex}",
            endpoint_id=endpoint_id,
            delivered_event_type="call.succeeded",
            delivered_event_id=str(uuid.uuid4()),
            payload=payload,
        )
        await self.publisher.publish(event, topic="webhooks.deliveries")
        return event


@contextlib.asynccontextmanager
async def admin_only(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> AsyncIterator[Outbound]:
    async with Publisher(kafka, codec, catalogue) as publisher:
        # the receivers listen on loopback: registration applies the worker's allow-list too
        policy = DestinationPolicy.allowing(LOOPBACK)
        yield Outbound(publisher, EndpointAdmin(publisher, EndpointView(), policy))


@contextlib.asynccontextmanager
async def running_service(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    settings: DeliverySettings,
    *,
    fanout: bool = False,
) -> AsyncIterator[WebhookDeliveryService]:
    service = WebhookDeliveryService(kafka, codec, catalogue, settings, fanout=fanout)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
