"""Outcome building for webhook deliveries: the records that account for one attempt, as data.

The webhook twin of :mod:`agents.outcomes`: ``webhook.delivery_attempted`` as the request goes out
(journaled, like a call's claim), then ``webhook.delivered``; or ``webhook.delivery_failed``
followed by a retry-tier record, a dead letter (the failure envelope as headers and typed event),
or the endpoint's ``webhook.endpoint_disabled`` plus a dead letter. The retry decision itself is
:func:`connectors.webhooks.decide`. No Kafka and no HTTP here: the worker sends the request and
hands what happened to :class:`DeliveryOutcomes`; the runtime writes the outputs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from agents.outputs import Output, Source
from connectors.webhooks import (
    MAX_RETRY_AFTER_S,
    Action,
    AttemptResult,
    Decision,
    RetrySchedule,
    decide,
)
from connectors.webhooks.registry import ENDPOINTS_TOPIC as ENDPOINTS
from connectors.webhooks.registry import Endpoint
from connectors.webhooks.settings import DeliverySettings
from streams import headers as h
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.webhooks import (
    WebhookDelivered,
    WebhookDeliveryAttempted,
    WebhookDeliveryDeadLettered,
    WebhookDeliveryFailed,
    WebhookDeliveryRequested,
    WebhookEndpointDisabled,
)
from streams.topics import Catalogue

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


def time_header(headers: dict[str, bytes], name: str) -> float | None:
    """A header's moment as unix seconds (ISO 8601; unix seconds from older records)."""
    moment = h.parse_time(headers.get(name))
    return None if moment is None else moment.timestamp()


def _first_failure(headers: dict[str, bytes]) -> float | None:
    found = time_header(headers, FIRST_FAILURE_AT)
    return found if found is not None else time_header(headers, _LEGACY_FIRST_FAILURE_AT)


def _error_class(result: AttemptResult) -> str:
    if result.status is not None:
        return f"HTTP{result.status}"
    return (result.error or "error").split(":")[0]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class DeliveryOutcomes:
    """Builds the outputs of a delivery attempt from what happened (times are unix seconds)."""

    def __init__(self, settings: DeliverySettings, catalogue: Catalogue) -> None:
        self.settings = settings
        self._catalogue = catalogue

    def too_late(self, due_at: float, now: float | None = None) -> str | None:
        """Why a due time cannot have been set by us (it would hold its partition for good)."""
        longest = max((*self.settings.retry_delays_s, MAX_RETRY_AFTER_S)) + DUE_MARGIN_S
        if due_at - (time.time() if now is None else now) <= longest:
            return None
        when = _utc(due_at).isoformat() if due_at < 253_402_300_799 else f"{due_at:g}"
        return f"due at {when}, more than {longest:g} s away: beyond any retry tier's delay"

    def attempted(self, event: WebhookDeliveryRequested, endpoint: Endpoint) -> Output:
        """The record written as the request goes out (same key and partition as its outcome)."""
        return Output(
            ATTEMPTS,
            WebhookDeliveryAttempted(
                delivery_id=event.delivery_id,
                endpoint_id=event.endpoint_id,
                attempt=event.attempt,
                url=endpoint.url,
                causation_id=str(event.event_id),
                correlation_id=event.correlation_id,
            ),
        )

    def schedule_for(self, endpoint: Endpoint) -> RetrySchedule:
        return RetrySchedule(self.settings.retry_delays_s[: max(0, endpoint.max_attempts - 1)])

    def decision(
        self,
        event: WebhookDeliveryRequested,
        endpoint: Endpoint,
        result: AttemptResult,
        *,
        now: float,
        failing_since: float | None,
    ) -> Decision:
        if result.fatal:  # nothing was sent: no retry can help, and the endpoint is not down
            return Decision(Action.DEAD_LETTER, reason=result.error or "unsendable request")
        return decide(
            status=result.status,
            error=result.error,
            failures_before=event.attempt - 1,
            retry_after_s=result.retry_after_s,
            schedule=self.schedule_for(endpoint),
            now=now,
            failing_since=failing_since,
            disable_after_s=self.settings.disable_after_s,
        )

    def recorded(
        self,
        event: WebhookDeliveryRequested,
        source: Source,
        endpoint: Endpoint,
        result: AttemptResult,
        *,
        now: float,
        failing_since: float | None,
    ) -> list[Output]:
        """What an attempt that was made (or could not even be built) leaves behind."""
        decision = self.decision(event, endpoint, result, now=now, failing_since=failing_since)
        common = {
            "delivery_id": event.delivery_id,
            "endpoint_id": event.endpoint_id,
            "attempt": event.attempt,
            "causation_id": str(event.event_id),
            "correlation_id": event.correlation_id,
        }
        if decision.action is Action.DELIVERED:
            assert result.status is not None
            delivered = WebhookDelivered(
                **common, status=result.status, latency_ms=result.duration_ms
            )
            return [Output(ATTEMPTS, delivered)]
        excerpt = f" | {result.response_excerpt[:200]}" if result.response_excerpt else ""
        failed = WebhookDeliveryFailed(
            **common,
            status=result.status,
            error_class=_error_class(result),
            message=(result.error or "")[:500] + excerpt,
            retriable=decision.action is Action.RETRY,
            latency_ms=result.duration_ms,
        )
        outputs = [Output(ATTEMPTS, failed)]
        if decision.action is Action.RETRY:
            return [*outputs, self.retry(event, source, decision, now)]
        if decision.action is Action.DEAD_LETTER:
            reason = DeadLetterReason.FATAL if result.fatal else DeadLetterReason.EXHAUSTED
        else:  # disable the endpoint: this delivery ends with it
            reason = DeadLetterReason.FATAL
            disabled = WebhookEndpointDisabled(
                endpoint_id=endpoint.endpoint_id, reason=decision.reason
            )
            outputs.append(Output(ENDPOINTS, disabled))
        error_class = _error_class(result)
        return [
            *outputs,
            self.dead_letter(event, source, reason, error_class, decision.reason, now),
        ]

    def retry(
        self, event: WebhookDeliveryRequested, source: Source, decision: Decision, now: float
    ) -> Output:
        again = WebhookDeliveryRequested(
            **event.model_dump(exclude={"event_id", "occurred_at", "attempt", "causation_id"}),
            attempt=event.attempt + 1,
            causation_id=str(event.event_id),
        )
        first_failure = _first_failure(source.headers) or now
        return Output(
            tier_topic(decision.tier),
            again,
            headers={
                DUE_AT: h.iso(_utc(decision.due_at)),
                FIRST_FAILURE_AT: h.iso(_utc(first_failure)),
            },
        )

    def failed_for_good(
        self, event: WebhookDeliveryRequested, source: Source, error: BaseException, now: float
    ) -> list[Output]:
        """A delivery that cannot go on (a bug, an unwritable outcome): its fatal dead letter."""
        reason = f"{type(error).__name__}: {error}"
        name = type(error).__name__
        return [self.dead_letter(event, source, DeadLetterReason.FATAL, name, reason, now)]

    def dead_letter(
        self,
        event: WebhookDeliveryRequested,
        source: Source,
        reason: DeadLetterReason,
        error_class: str,
        message: str,
        now: float,
    ) -> Output:
        first_failure = _first_failure(source.headers) or now
        envelope = DeadLetterEnvelope(
            reason=reason,
            original_topic=self._catalogue.name(source.topic),
            original_partition=source.partition,
            original_offset=source.offset,
            original_timestamp=_utc(source.timestamp_ms / 1000) if source.timestamp_ms else None,
            error_class=error_class,
            message=message[:1000],
            attempts=event.attempt,
            first_failure_at=_utc(first_failure),
            last_failure_at=_utc(now),
            service=event.endpoint_id,
        )
        return Output(
            DEAD_LETTERS,
            WebhookDeliveryDeadLettered(
                delivery_id=event.delivery_id,
                endpoint_id=event.endpoint_id,
                request=event,
                failure=envelope,
                causation_id=str(event.event_id),
                correlation_id=event.correlation_id,
            ),
            headers=h.envelope_headers(envelope),
        )
