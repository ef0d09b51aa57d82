"""The delivery worker: signs and sends deliveries, records every attempt, retries through tiers.

It consumes ``webhooks.deliveries`` and ``webhooks.deliveries.retry.1..n`` in one consumer group,
on the same :class:`~agents.runtime.Stage` as the call pipeline. A record in a retry tier carries
its due time in the ``backbone-due-at`` header; when the head of a tier partition is not due yet,
only that partition is paused (and rewound to it) until then, so nothing busy-waits and other
partitions keep flowing. Offsets are committed only after the outcome of a record has been written
(at-least-once; the stable ``webhook-id`` lets receivers drop the rare duplicate).

As in the call pipeline, an attempt returns its outputs (built by
:class:`~agents.webhooks._outcomes.DeliveryOutcomes`) and the worker writes them through the one
:class:`~agents.outputs.OutputWriter`; only the attempt record is written on the way, as the
request goes out.
"""

from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agents.outputs import Output, OutputWriter, Source
from agents.runtime import Record, Stage
from agents.webhooks._outcomes import (
    DELIVERIES,
    DUE_AT,
    DeliveryOutcomes,
    tier_topic,
    time_header,
)
from connectors.webhooks import EndpointLimits, WebhookSender
from connectors.webhooks.registry import EndpointView
from connectors.webhooks.settings import DeliverySettings
from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.common import DeadLetterReason
from streams.events.webhooks import (
    WebhookDelivered,
    WebhookDeliveryFailed,
    WebhookDeliveryRequested,
    WebhookEndpointDisabled,
)
from streams.headers import side_effects_allowed
from streams.long_poll import LONG_POLL_MS
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from streams.tracing import consumed, current_traceparent

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("backbone.agents")

__all__ = ["DELIVERIES", "DeliveryWorker", "tier_topic"]


class DeliveryWorker:
    """A long-running service (``name``/``start``/``stop``/``describe``) for ``backbone up``."""

    name = "webhooks"

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: DeliverySettings,
        view: EndpointView,
        publisher: Publisher,
    ) -> None:
        tiers = len([s for s in catalogue if s.name.startswith(f"{DELIVERIES}.retry.")])
        if settings.tiers > tiers:
            raise ValueError(f"{settings.tiers} retry delays but the catalogue has {tiers} tiers")
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._settings = settings
        self._view = view
        self._out = OutputWriter(publisher)
        self._outcomes = DeliveryOutcomes(settings, catalogue)
        self._sender = WebhookSender(settings.sender())
        self._limits = EndpointLimits()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._failing_since: dict[str, float] = {}
        self._stage: Stage | None = None
        self.delivered = 0
        self.failed = 0
        self.undecodable = 0

    def describe(self) -> str:
        return (
            f"delivery worker, group {self._settings.group_id}, "
            f"{self._settings.tiers} retry tiers, concurrency {self._settings.concurrency}"
        )

    @property
    def topics(self) -> list[str]:
        logical = [DELIVERIES, *(tier_topic(n) for n in range(1, self._settings.tiers + 1))]
        return [self._catalogue.name(t) for t in logical]

    async def start(self) -> None:
        await self._sender.start()
        self._stage = Stage(
            "webhooks",
            self._kafka,
            self._settings.group_id,
            self.topics,
            self._deliver_all,
            prefetch=self._settings.in_hand,
            max_batch=self._settings.batch_size,
            commit_interval_s=self._settings.commit_interval_s,
            session_timeout_s=self._settings.session_timeout_s,
            rebalance_timeout_s=self._settings.timeout_s + 5,
            drain_timeout_s=self._settings.timeout_s + 5,
            due=self._due,
            fetch_wait_ms=self._settings.fetch_wait_ms,
            # nothing in hand or parked: no due time to wake for (a parked retry tier keeps the
            # short wait, or its resumed partition would wait for a long fetch to return)
            idle_fetch_wait_ms=LONG_POLL_MS,
        )
        try:
            await self._stage.start()
        except BaseException:
            await self._sender.stop()
            raise

    async def stop(self) -> None:
        """Let the deliveries in hand finish (bounded), so their outcomes are written and their
        offsets committed."""
        if self._stage is not None:
            await self._stage.stop()
            self._stage = None
        await self._sender.stop()

    def _due(self, record: Record) -> float | None:
        """When a tier record is due; None (now) without a due time or for a poison one."""
        due = time_header(dict(record.headers), DUE_AT)
        return None if due is None or self._outcomes.too_late(due) is not None else due

    async def _deliver_all(self, records: list[Record]) -> None:
        # a record whose outcome could not be written for a retriable reason (Kafka away) raises:
        # the stage reads it again; anything else fails that delivery only, never the batch
        await asyncio.gather(*(self._deliver(r) for r in records))

    # --- one delivery ---------------------------------------------------------------------------

    def _source(self, record: Record) -> Source:
        return Source(
            self._catalogue.logical(record.topic),
            record.partition,
            record.offset,
            record.timestamp or 0,
            {k: bytes(v) for k, v in record.headers},
        )

    async def _deliver(self, record: Record) -> None:
        """Deliver one record and write what it produced; returns once that is durable."""
        source = self._source(record)
        if not side_effects_allowed(source.headers):
            return  # a replayed copy: never re-deliver unless the operator asked for it
        try:
            event = await self._codec.decode(record.value or b"")
        except BackboneError as exc:
            if exc.retriable:
                raise  # the registry is away: read it again later
            # a poison record must not stall the partition; it cannot be delivered either
            log.error("undecodable delivery %s@%d skipped: %s", record.topic, record.offset, exc)
            self.undecodable += 1
            return
        if not isinstance(event, WebhookDeliveryRequested):
            log.warning("unexpected %s on %s", event.event_type, record.topic)
            return
        # the hop continues the event's trace: the HTTP request and every record written about
        # this attempt (attempted, outcome, retry, dead letter) carry it
        with consumed("webhooks.deliver", source.headers, topic=record.topic):
            try:
                outputs = await self._attempt(event, source)
            except BackboneError as exc:
                if exc.retriable:
                    raise
                outputs = self._outcomes.failed_for_good(event, source, exc, time.time())
            except Exception as exc:  # a bug: this delivery's fatal failure, not a batch rewind
                log.error("delivery %s failed", event.delivery_id, exc_info=exc)
                outputs = self._outcomes.failed_for_good(event, source, exc, time.time())
            await self._write(event, source, outputs)

    async def _write(
        self,
        event: WebhookDeliveryRequested,
        source: Source,
        outputs: list[Output],
        *,
        fallback: bool = True,
    ) -> None:
        """Write a delivery's outputs, then account for them. An output refused for good (too
        large) is not a batch failure, which would be read again forever: the delivery is
        dead-lettered with that reason instead."""
        try:
            await self._out.write_phases(outputs)
        except BackboneError as exc:
            if exc.retriable or not fallback:
                raise
            log.error("outcome of delivery %s not writable: %s", event.delivery_id, exc)
            again = self._outcomes.failed_for_good(event, source, exc, time.time())
            await self._write(event, source, again, fallback=False)
            return
        for output in outputs:  # counted once written: the counters mean "done and recorded"
            if isinstance(output.event, WebhookDelivered):
                self.delivered += 1
            elif isinstance(output.event, WebhookDeliveryFailed):
                self.failed += 1
            elif isinstance(output.event, WebhookEndpointDisabled):
                self._view.apply(output.event, {})  # stop at once; the topic tells the others
                log.warning(
                    "endpoint %s disabled: %s", output.event.endpoint_id, output.event.reason
                )

    async def _attempt(self, event: WebhookDeliveryRequested, source: Source) -> list[Output]:
        """Make one attempt (unless it cannot be made) and return the outputs accounting for it.

        Only ``webhook.delivery_attempted`` is written here, as the request goes out (a
        journal, like a call's claim); everything else is returned."""
        due_at = time_header(source.headers, DUE_AT)
        if due_at is not None and (why := self._outcomes.too_late(due_at)) is not None:
            log.warning("dead-lettering delivery %s: %s", event.delivery_id, why)
            fatal, name = DeadLetterReason.FATAL, "RetryDueTooLate"
            return [self._outcomes.dead_letter(event, source, fatal, name, why, time.time())]
        if due_at is not None and (wait := due_at - time.time()) > 0:
            await asyncio.sleep(wait)  # fetched a moment early (the stage's EARLY_S): send on time
        endpoint = self._view.get(event.endpoint_id)
        if endpoint is None or endpoint.disabled:
            why = "unknown endpoint" if endpoint is None else "endpoint disabled"
            fatal, name = DeadLetterReason.FATAL, "EndpointUnavailable"
            return [self._outcomes.dead_letter(event, source, fatal, name, why, time.time())]
        async with self._slots:
            await self._limits.acquire(endpoint.endpoint_id, endpoint.rate_limit_per_second)
            # the attempt's record and the request travel together; same key and partition as
            # the outcome, so the history stays in order without waiting for this ack first
            attempted = await self._out.send([self._outcomes.attempted(event, endpoint)])
            with _TRACER.start_as_current_span("webhook POST", kind=SpanKind.CLIENT):
                extra = dict(endpoint.headers)
                if (traceparent := current_traceparent()) is not None:
                    extra[h.TRACEPARENT] = traceparent  # the receiver may continue the trace
                result = await self._sender.send(
                    endpoint.url,
                    event.delivery_id,
                    event.payload.encode(),
                    endpoint.signing_secrets(),
                    extra_headers=extra,
                    timeout_s=min(endpoint.timeout_ms / 1000, self._settings.timeout_s),
                )
            await self._out.acknowledged(attempted)
        now = time.time()
        if result.ok:
            self._failing_since.pop(endpoint.endpoint_id, None)
        elif not result.fatal:  # an unsendable request says nothing about the endpoint
            self._failing_since.setdefault(endpoint.endpoint_id, now)
        return self._outcomes.recorded(
            event,
            source,
            endpoint,
            result,
            now=now,
            failing_since=self._failing_since.get(endpoint.endpoint_id),
        )
