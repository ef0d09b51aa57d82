"""The delivery worker: signs and sends deliveries, records every attempt, retries through tiers.

It consumes ``webhooks.deliveries`` and ``webhooks.deliveries.retry.1..n`` in one consumer group,
on the same :class:`~agents.runtime.Stage` as the call pipeline. A record in a retry tier carries
its due time in the ``backbone-due-at`` header; when the head of a tier partition is not due yet,
only that partition is paused (and rewound to it) until then, so nothing busy-waits and other
partitions keep flowing. Offsets are committed only after the outcome of a record has been written
(at-least-once; the stable ``webhook-id`` lets receivers drop the rare duplicate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agents.runtime import Record, Stage
from connectors.webhooks import (
    MAX_RETRY_AFTER_S,
    Action,
    AttemptResult,
    Decision,
    EndpointLimits,
    RetrySchedule,
    WebhookSender,
    decide,
)
from connectors.webhooks.registry import ENDPOINTS_TOPIC as ENDPOINTS
from connectors.webhooks.registry import Endpoint, EndpointView, EventWriter
from connectors.webhooks.settings import DeliverySettings
from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.webhooks import (
    WebhookDelivered,
    WebhookDeliveryAttempted,
    WebhookDeliveryDeadLettered,
    WebhookDeliveryFailed,
    WebhookDeliveryRequested,
    WebhookEndpointDisabled,
)
from streams.headers import side_effects_allowed
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from streams.tracing import consumed, current_traceparent

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("backbone.agents")

DUE_AT = h.DUE_AT
FIRST_FAILURE_AT = h.DLT_FIRST_FAILURE_AT
#: A tier record due later than the longest delay a tier can set plus this is poison.
DUE_MARGIN_S = 60.0
#: What tier records carried before the header vocabulary was shared (read, never written).
_LEGACY_FIRST_FAILURE_AT = "backbone-first-failure-at"
DELIVERIES = "webhooks.deliveries"
ATTEMPTS = "webhooks.attempts"
DEAD_LETTERS = "webhooks.deliveries.dlt"


def tier_topic(n: int) -> str:
    return f"{DELIVERIES}.retry.{n}"


def _time_header(headers: dict[str, bytes], name: str) -> float | None:
    """A header's moment as unix seconds (ISO 8601; unix seconds from older records)."""
    moment = h.parse_time(headers.get(name))
    return None if moment is None else moment.timestamp()


def _first_failure(headers: dict[str, bytes]) -> float | None:
    found = _time_header(headers, FIRST_FAILURE_AT)
    return found if found is not None else _time_header(headers, _LEGACY_FIRST_FAILURE_AT)


def _error_class(result: AttemptResult) -> str:
    if result.status is not None:
        return f"HTTP{result.status}"
    return (result.error or "error").split(":")[0]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


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
        writer: EventWriter,
        *,
        fetch_max_wait_ms: int = 50,
    ) -> None:
        tiers = len([s for s in catalogue if s.name.startswith(f"{DELIVERIES}.retry.")])
        if settings.tiers > tiers:
            raise ValueError(f"{settings.tiers} retry delays but the catalogue has {tiers} tiers")
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._settings = settings
        self._view = view
        self._writer = writer
        self._fetch_max_wait_ms = fetch_max_wait_ms
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
            prefetch=self._settings.concurrency * 4,
            max_batch=self._settings.concurrency * 4,
            commit_interval_s=0.5,
            session_timeout_s=10.0,
            rebalance_timeout_s=self._settings.timeout_s + 5,
            drain_timeout_s=self._settings.timeout_s + 5,
            due=self._due,
            fetch_wait_ms=self._fetch_max_wait_ms,
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
        due = _time_header(dict(record.headers), DUE_AT)
        return None if due is None or self._too_late(due) is not None else due

    def _too_late(self, due_at: float) -> str | None:
        """Why a due time cannot have been set by us (it would hold its partition for good)."""
        longest = max((*self._settings.retry_delays_s, MAX_RETRY_AFTER_S)) + DUE_MARGIN_S
        if due_at - time.time() <= longest:
            return None
        when = _utc(due_at).isoformat() if due_at < 253_402_300_799 else f"{due_at:g}"
        return f"due at {when}, more than {longest:g} s away: beyond any retry tier's delay"

    async def _deliver_all(self, records: list[Record]) -> None:
        # a record whose outcome could not be written for a retriable reason (Kafka away) raises:
        # the stage reads it again; anything else fails that delivery only, never the batch
        await asyncio.gather(*(self._deliver(r) for r in records))

    # --- one delivery ---------------------------------------------------------------------------

    async def _deliver(self, record: Record) -> None:
        headers = dict(record.headers)
        if not side_effects_allowed(headers):
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
        try:
            # the hop continues the event's trace: the HTTP request and every record written
            # about this attempt (attempted, outcome, retry, dead letter) carry it
            with consumed("webhooks.deliver", headers, topic=record.topic):
                await self._deliver_event(event, record, headers)
        except BackboneError as exc:
            if exc.retriable:
                raise
            await self._failed_for_good(event, record, headers, exc)
        except Exception as exc:  # a bug: this delivery's fatal failure, not a batch rewind
            log.error("delivery %s failed", event.delivery_id, exc_info=exc)
            await self._failed_for_good(event, record, headers, exc)

    async def _failed_for_good(
        self,
        event: WebhookDeliveryRequested,
        record: Record,
        headers: dict[str, bytes],
        error: Exception,
    ) -> None:
        reason = f"{type(error).__name__}: {error}"
        await self._dead_letter(
            event,
            record,
            headers,
            DeadLetterReason.FATAL,
            type(error).__name__,
            reason,
            time.time(),
        )

    async def _deliver_event(
        self, event: WebhookDeliveryRequested, record: Record, headers: dict[str, bytes]
    ) -> None:
        due_at = _time_header(headers, DUE_AT)
        if due_at is not None and (why := self._too_late(due_at)) is not None:
            log.warning("dead-lettering delivery %s: %s", event.delivery_id, why)
            await self._dead_letter(
                event, record, headers, DeadLetterReason.FATAL, "RetryDueTooLate", why, time.time()
            )
            return
        if due_at is not None and (wait := due_at - time.time()) > 0:
            await asyncio.sleep(wait)  # fetched a moment early (the stage's EARLY_S): send on time
        endpoint = self._view.get(event.endpoint_id)
        if endpoint is None or endpoint.disabled:
            reason = "unknown endpoint" if endpoint is None else "endpoint disabled"
            await self._dead_letter(
                event,
                record,
                headers,
                DeadLetterReason.FATAL,
                "EndpointUnavailable",
                reason,
                time.time(),
            )
            return
        async with self._slots:
            await self._limits.acquire(endpoint.endpoint_id, endpoint.rate_limit_per_second)
            # the attempt's record and the request travel together; same key and partition as
            # the outcome, so the history stays in order without waiting for this ack first
            attempted = asyncio.ensure_future(
                self._writer.publish(
                    WebhookDeliveryAttempted(
                        delivery_id=event.delivery_id,
                        endpoint_id=event.endpoint_id,
                        attempt=event.attempt,
                        url=endpoint.url,
                        causation_id=str(event.event_id),
                        correlation_id=event.correlation_id,
                    ),
                    topic=ATTEMPTS,
                )
            )
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
            await attempted
        await self._record(event, record, headers, endpoint, result)

    def _schedule_for(self, endpoint: Endpoint) -> RetrySchedule:
        return RetrySchedule(self._settings.retry_delays_s[: max(0, endpoint.max_attempts - 1)])

    async def _record(
        self,
        event: WebhookDeliveryRequested,
        record: Record,
        headers: dict[str, bytes],
        endpoint: Endpoint,
        result: AttemptResult,
    ) -> None:
        now = time.time()
        if result.ok:
            self._failing_since.pop(endpoint.endpoint_id, None)
        elif not result.fatal:  # an unsendable request says nothing about the endpoint
            self._failing_since.setdefault(endpoint.endpoint_id, now)
        decision = (
            Decision(Action.DEAD_LETTER, reason=result.error or "unsendable request")
            if result.fatal  # nothing was sent: no retry can help, and the endpoint is not down
            else decide(
                status=result.status,
                error=result.error,
                failures_before=event.attempt - 1,
                retry_after_s=result.retry_after_s,
                schedule=self._schedule_for(endpoint),
                now=now,
                failing_since=self._failing_since.get(endpoint.endpoint_id),
                disable_after_s=self._settings.disable_after_s,
            )
        )
        common = {
            "delivery_id": event.delivery_id,
            "endpoint_id": event.endpoint_id,
            "attempt": event.attempt,
            "causation_id": str(event.event_id),
            "correlation_id": event.correlation_id,
        }
        if decision.action is Action.DELIVERED:
            assert result.status is not None
            await self._writer.publish(
                WebhookDelivered(**common, status=result.status, latency_ms=result.duration_ms),
                topic=ATTEMPTS,
            )
            self.delivered += 1  # counted once recorded: the counters mean "done and written"
            return
        self.failed += 1
        await self._writer.publish(
            WebhookDeliveryFailed(
                **common,
                status=result.status,
                error_class=_error_class(result),
                message=(result.error or "")[:500]
                + (f" | {result.response_excerpt[:200]}" if result.response_excerpt else ""),
                retriable=decision.action is Action.RETRY,
                latency_ms=result.duration_ms,
            ),
            topic=ATTEMPTS,
        )
        first_failure = _first_failure(headers) or now
        if decision.action is Action.RETRY:
            await self._retry(event, decision, first_failure)
        elif decision.action is Action.DEAD_LETTER:
            await self._dead_letter(
                event,
                record,
                headers,
                DeadLetterReason.FATAL if result.fatal else DeadLetterReason.EXHAUSTED,
                _error_class(result),
                decision.reason,
                now,
            )
        else:
            await self._disable(endpoint, decision.reason)
            await self._dead_letter(
                event,
                record,
                headers,
                DeadLetterReason.FATAL,
                _error_class(result),
                decision.reason,
                now,
            )

    async def _retry(
        self, event: WebhookDeliveryRequested, decision: Decision, first_failure: float
    ) -> None:
        again = WebhookDeliveryRequested(
            **event.model_dump(exclude={"event_id", "occurred_at", "attempt", "causation_id"}),
            attempt=event.attempt + 1,
            causation_id=str(event.event_id),
        )
        await self._writer.publish(
            again,
            topic=tier_topic(decision.tier),
            headers={
                DUE_AT: h.iso(_utc(decision.due_at)),
                FIRST_FAILURE_AT: h.iso(_utc(first_failure)),
            },
        )

    async def _disable(self, endpoint: Endpoint, reason: str) -> None:
        disabled = WebhookEndpointDisabled(endpoint_id=endpoint.endpoint_id, reason=reason)
        await self._writer.publish(disabled, topic=ENDPOINTS)
        self._view.apply(disabled, {})  # stop at once; the topic tells everyone else
        log.warning("endpoint %s disabled: %s", endpoint.endpoint_id, reason)

    async def _dead_letter(
        self,
        event: WebhookDeliveryRequested,
        record: Record,
        headers: dict[str, bytes],
        reason: DeadLetterReason,
        error_class: str,
        message: str,
        now: float,
    ) -> None:
        first_failure = _first_failure(headers) or now
        envelope = DeadLetterEnvelope(
            reason=reason,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_timestamp=_utc(record.timestamp / 1000) if record.timestamp else None,
            error_class=error_class,
            message=message[:1000],
            attempts=event.attempt,
            first_failure_at=_utc(first_failure),
            last_failure_at=_utc(now),
            service=event.endpoint_id,
        )
        await self._writer.publish(
            WebhookDeliveryDeadLettered(
                delivery_id=event.delivery_id,
                endpoint_id=event.endpoint_id,
                request=event,
                failure=envelope,
                causation_id=str(event.event_id),
                correlation_id=event.correlation_id,
            ),
            topic=DEAD_LETTERS,
            headers=h.envelope_headers(envelope),
        )
