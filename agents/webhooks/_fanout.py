"""Events that match an endpoint's filter become ``webhook.delivery_requested`` records.

The delivery id is derived from the endpoint and the event, so re-processing the same event after
a crash requests the same delivery (same ``webhook-id``: the receiver deduplicates it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable

from connectors.webhooks.registry import Endpoint, EndpointView, EventWriter
from streams.codec import Codec
from streams.consumer import Subscriber
from streams.events import Event
from streams.events.webhooks import WebhookDeliveryRequested
from streams.headers import side_effects_allowed
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from streams.tracing import consumed

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("7b0f9c52-8d7e-4f0c-9a55-52f1d1b2c0de")
DELIVERIES = "webhooks.deliveries"


def delivery_id(endpoint_id: str, event_id: uuid.UUID) -> str:
    return "msg_" + uuid.uuid5(_NAMESPACE, f"{endpoint_id}/{event_id}").hex


def payload_of(event: Event) -> str:
    """The body receivers get, in the Standard Webhooks shape ``{type, timestamp, data}``."""
    return json.dumps(
        {
            "type": event.event_type,
            "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": event.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )


def deliveries_for(event: Event, endpoints: Iterable[Endpoint]) -> list[WebhookDeliveryRequested]:
    body = payload_of(event)
    return [
        WebhookDeliveryRequested(
            delivery_id=delivery_id(ep.endpoint_id, event.event_id),
            endpoint_id=ep.endpoint_id,
            delivered_event_type=event.event_type,
            delivered_event_id=str(event.event_id),
            payload=body,
            attempt=1,
            correlation_id=event.correlation_id,
            causation_id=str(event.event_id),
            traceparent=event.traceparent,
        )
        for ep in endpoints
        if ep.accepts(event.event_type)
    ]


class Fanout:
    """Follows the configured fact topics and requests deliveries (a consumer group)."""

    name = "webhooks-fanout"

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        topics: Iterable[str],
        group_id: str,
        view: EndpointView,
        writer: EventWriter,
    ) -> None:
        self._subscriber = Subscriber(kafka, codec, catalogue, list(topics), group_id)
        self._view = view
        self._writer = writer
        self._task: asyncio.Task[None] | None = None
        self.requested = 0

    async def start(self) -> None:
        await self._subscriber.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        async for received in self._subscriber:
            if side_effects_allowed(received.headers):  # replayed copies never re-deliver
                # the delivery requests continue the event's trace (streams.tracing)
                with consumed("webhooks.fanout", received.headers, topic=received.topic):
                    for request in deliveries_for(received.event, self._view.endpoints.values()):
                        await self._writer.publish(request, topic=DELIVERIES)
                        self.requested += 1
            await self._subscriber.commit(received)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._subscriber.stop()
