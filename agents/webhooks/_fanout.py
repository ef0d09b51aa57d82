"""Events that match an endpoint's filter become ``webhook.delivery_requested`` records.

The delivery id is derived from the endpoint and the event, so re-processing the same event after
a crash requests the same delivery (same ``webhook-id``: the receiver deduplicates it).

A delivery that can never be written (its body is too large for a record) is dead-lettered with
that reason and without its body (the event it was made from stays in its topic), and fan-out goes
on with the next one; only a retriable error (Kafka away) stops the loop.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from connectors.webhooks.registry import Endpoint, EndpointView, EventWriter
from streams import headers as h
from streams.codec import Codec
from streams.consumer import Received, Subscriber
from streams.errors import BackboneError, OffsetCommitError
from streams.events import Event
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.webhooks import WebhookDeliveryDeadLettered, WebhookDeliveryRequested
from streams.headers import side_effects_allowed
from streams.settings import KafkaSettings
from streams.supervise import Supervisor, retrying
from streams.topics import Catalogue
from streams.tracing import consumed

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("7b0f9c52-8d7e-4f0c-9a55-52f1d1b2c0de")
DELIVERIES = "webhooks.deliveries"
DEAD_LETTERS = "webhooks.deliveries.dlt"


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
        self.supervisor = Supervisor(self.name)
        self.requested = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        await self._subscriber.start()
        # a Kafka outage while reading restarts the loop (the subscriber keeps its buffer);
        # anything else stops fan-out, is logged once and shows in problems() (readiness)
        self.supervisor.start("fan-out", self._run)

    def problems(self) -> dict[str, str]:
        return self.supervisor.problems()

    async def _run(self) -> None:
        async for received in self._subscriber:
            # the same record until its requests are written: never commit past a failure
            await retrying(functools.partial(self._fan_out, received), f"{self.name}: fan-out")
            self.supervisor.mark_ok("fan-out")

    async def _fan_out(self, received: Received) -> None:
        if side_effects_allowed(received.headers):  # replayed copies never re-deliver
            # the delivery requests continue the event's trace (streams.tracing)
            with consumed("webhooks.fanout", received.headers, topic=received.topic):
                for request in deliveries_for(received.event, self._view.endpoints.values()):
                    await self._request(request, received)  # same id when repeated
        try:
            await self._subscriber.commit(received)
        except OffsetCommitError as exc:  # partitions moved: the new owner reads it again
            log.info("%s: %s", self.name, exc)

    async def _request(self, request: WebhookDeliveryRequested, received: Received) -> None:
        try:
            await self._writer.publish(request, topic=DELIVERIES)
        except BackboneError as exc:
            if exc.retriable:
                raise  # Kafka away: the loop's supervision retries
            await self._dead_letter(request, received, exc)
            return
        self.requested += 1

    async def _dead_letter(
        self, request: WebhookDeliveryRequested, received: Received, error: BackboneError
    ) -> None:
        """The delivery cannot be written: its dead letter, without the body, says why."""
        now = datetime.now(UTC)
        size = len(request.payload.encode())
        message = (
            f"delivery of {request.delivered_event_type} {request.delivered_event_id} "
            f"(body {size} bytes) cannot be written: {error}"
        )
        log.error("webhook fan-out: %s", message)
        failure = DeadLetterEnvelope(
            reason=DeadLetterReason.FATAL,
            original_topic=received.topic,
            original_partition=received.partition,
            original_offset=received.offset,
            original_timestamp=datetime.fromtimestamp(received.timestamp_ms / 1000, UTC),
            error_class=type(error).__name__,
            message=message[:1000],
            attempts=0,
            first_failure_at=now,
            last_failure_at=now,
            service=request.endpoint_id,
        )
        await self._writer.publish(
            WebhookDeliveryDeadLettered(
                delivery_id=request.delivery_id,
                endpoint_id=request.endpoint_id,
                request=request.model_copy(update={"payload": ""}),
                failure=failure,
                causation_id=request.causation_id,
                correlation_id=request.correlation_id,
            ),
            topic=DEAD_LETTERS,
            headers=h.envelope_headers(failure),
        )
        self.dead_lettered += 1

    async def stop(self) -> None:
        await self.supervisor.close()
        await self._subscriber.stop()
