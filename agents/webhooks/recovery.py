"""Operator tools: re-send dead-lettered deliveries of a window, and read an endpoint's history.

Recovery re-requests each dead-lettered delivery once, with its original ``delivery_id`` (so the
receiver sees the same ``webhook-id`` and can deduplicate) and a fresh attempt count.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.webhooks.registry import EventWriter
from streams import headers as h
from streams.codec import Codec
from streams.consumer import Subscriber
from streams.events import Event
from streams.events.webhooks import WebhookDeliveryDeadLettered, WebhookDeliveryRequested
from streams.settings import KafkaSettings
from streams.topics import Catalogue

RECOVERED_FROM = h.RECOVERED_FROM


@dataclass(frozen=True)
class Recovered:
    delivery_id: str
    delivered_event_type: str
    reason: str
    dead_lettered_at_ms: int


async def _read(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    topic: str,
    since_ms: int | None,
) -> list[tuple[Event, int, str]]:
    """Every event of ``topic`` from ``since_ms`` to the current end, with timestamp and coordinates."""
    found = []
    subscriber = Subscriber(
        kafka,
        codec,
        catalogue,
        [topic],
        None,
        start_at_ms=since_ms if since_ms is not None else None,
        stop_at_end=True,
    )
    async with subscriber:
        async for received in subscriber:
            where = f"{received.topic}/{received.partition}/{received.offset}"
            found.append((received.event, received.timestamp_ms, where))
    return found


async def recover(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    writer: EventWriter,
    *,
    endpoint_id: str,
    since_ms: int,
    until_ms: int | None = None,
    dry_run: bool = False,
) -> list[Recovered]:
    chosen: dict[str, tuple[WebhookDeliveryDeadLettered, int, str]] = {}
    for event, ts, where in await _read(
        kafka, codec, catalogue, "webhooks.deliveries.dlt", since_ms
    ):
        if not isinstance(event, WebhookDeliveryDeadLettered) or event.endpoint_id != endpoint_id:
            continue
        if until_ms is not None and ts > until_ms:
            continue
        chosen.setdefault(event.delivery_id, (event, ts, where))  # once per delivery
    done = []
    for dead, ts, where in chosen.values():
        if not dry_run:
            again = WebhookDeliveryRequested(
                **dead.request.model_dump(
                    exclude={"event_id", "occurred_at", "attempt", "causation_id"}
                ),
                attempt=1,
                causation_id=str(dead.event_id),
            )
            await writer.publish(
                again, topic="webhooks.deliveries", headers={RECOVERED_FROM: where.encode()}
            )
        done.append(
            Recovered(dead.delivery_id, dead.request.delivered_event_type, dead.failure.message, ts)
        )
    return done


async def attempts(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    *,
    endpoint_id: str,
    since_ms: int | None = None,
) -> list[tuple[Event, int]]:
    """The endpoint's attempts and outcomes, oldest first."""
    rows = [
        (event, ts)
        for event, ts, _ in await _read(kafka, codec, catalogue, "webhooks.attempts", since_ms)
        if getattr(event, "endpoint_id", None) == endpoint_id
    ]
    return sorted(rows, key=lambda row: row[1])
