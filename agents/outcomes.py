"""Outcome building for calls: the events that account for one attempt, as pure data.

``call.succeeded`` (a response too large for a record is stored truncated and flagged); or
``call.failed`` followed by a retry-tier record and ``call.retry_scheduled``, a dead letter
(``calls.dlt`` record with the failure envelope as headers and typed event, plus
``call.dead_lettered`` in ``calls.results``), or ``call.expired``. The retry decision itself is
:func:`agents.retry.after_failure`. No Kafka and no connectors here: the executor runs the attempt
and hands what happened to :class:`Outcomes`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from agents import _headers as hd
from agents.errors import DeadlinePassedError
from agents.outputs import Output, Source
from agents.retry import CircuitWait, DeadLetterCause, RetryDecision, Verdict, after_failure
from agents.settings import WorkerSettings
from connectors.base import CallOutput
from connectors.errors import CallError
from streams import headers as h
from streams.errors import BackboneError
from streams.events.calls import (
    CallDeadLettered,
    CallExpired,
    CallFailed,
    CallRequested,
    CallRetryScheduled,
    CallSucceeded,
)
from streams.events.common import DeadLetterEnvelope, DeadLetterReason

RESULTS = "calls.results"
DLT = "calls.dlt"
#: The largest response a ``call.succeeded`` carries (UTF-8 bytes): with the reply copy and the
#: envelope it stays well under the producer's 1 MiB record limit. Larger ones are truncated and
#: flagged (``response_truncated``, ``response_bytes``).
MAX_RESPONSE_BYTES = 512 * 1024

Now = Callable[[], datetime]
Jitter = Callable[[], float]


class Outcomes:
    """Builds the outputs of an attempt from what happened; ``now`` is the executor's clock,
    ``jitter`` draws the share of an open circuit's wait a refused call's retry is placed at."""

    def __init__(self, settings: WorkerSettings, now: Now, jitter: Jitter = random.random) -> None:
        self.settings = settings
        self._now = now
        self._jitter = jitter

    def succeeded(self, request: CallRequested, output: CallOutput, took: float) -> list[Output]:
        response, size = capped(output.body)
        event = CallSucceeded(
            call_id=request.call_id,
            service=request.service,
            operation=request.operation,
            status=output.status,
            latency_ms=took * 1000,
            tokens_prompt=output.usage.prompt_tokens,
            tokens_completion=output.usage.completion_tokens,
            cost_usd=output.cost_usd,
            attempt=request.attempt,
            idempotency_key=request.idempotency_key,
            response=response,
            response_truncated=size is not None,
            response_bytes=size,
            model=output.model,
            correlation_id=request.correlation_id,
            causation_id=str(request.event_id),
        )
        # calls.results is the accounting trail: it always gets the outcome; reply_to a copy
        outputs = [Output(RESULTS, event)]
        if request.reply_to and request.reply_to != RESULTS:
            outputs.append(Output(request.reply_to, event))
        return outputs

    def failed(
        self,
        request: CallRequested,
        source: Source,
        error: BackboneError,
        took: float | None,
        *,
        circuit: CircuitWait | None = None,
    ) -> list[Output]:
        """A failed attempt: ``call.failed`` and then a retry, a dead letter or expiry.

        Every attempt spends one of the call's attempts, including one its service's open
        ``circuit`` refused: so every call ends after at most ``len(delays_s)`` retries."""
        now = self._now()
        status = error.status if isinstance(error, CallError) else None
        retry_after = error.retry_after_s if isinstance(error, CallError) else None
        outputs = [
            Output(
                RESULTS,
                CallFailed(
                    call_id=request.call_id,
                    service=request.service,
                    operation=request.operation,
                    error_class=type(error).__name__,
                    message=str(error)[:500],
                    retriable=error.retriable,
                    status=status,
                    attempt=request.attempt,
                    latency_ms=None if took is None else took * 1000,
                    idempotency_key=request.idempotency_key,
                    correlation_id=request.correlation_id,
                    causation_id=str(request.event_id),
                ),
            )
        ]
        attempts = request.attempt + 1
        decision = after_failure(
            attempts=attempts,
            retriable=error.retriable,
            now=now,
            policy=self.settings.retry,
            deadline=request.deadline,
            retry_after_s=retry_after,
            circuit=circuit,
            jitter=self._jitter() if circuit is not None else 0.0,
            max_attempts=request.max_attempts,
        )
        envelope = envelope_headers(request, source, error, now, attempts)
        if decision.verdict is Verdict.RETRY:
            outputs += self._retry(request, decision, envelope, error)
        elif decision.verdict is Verdict.EXPIRE:
            outputs += self.expired(
                request, source, now, str(error), envelope=envelope, error=error
            )
        else:
            outputs += self._dead_letter(request, source, decision, envelope, error)
        return outputs

    def _retry(
        self,
        request: CallRequested,
        decision: RetryDecision,
        envelope: dict[str, bytes],
        error: BackboneError,
    ) -> list[Output]:
        assert decision.tier is not None
        assert decision.due_at is not None
        next_attempt = request.attempt + 1
        retry = request.model_copy(update={"attempt": next_attempt})
        headers = {**envelope, hd.DUE_AT: hd.iso(decision.due_at)}
        return [
            Output(
                f"calls.retry.{decision.tier}", retry, key=request.service.encode(), headers=headers
            ),
            Output(
                RESULTS,
                CallRetryScheduled(
                    call_id=request.call_id,
                    service=request.service,
                    due_at=decision.due_at,
                    tier=decision.tier,
                    attempt=next_attempt,
                    reason=f"{error.code}: {error}"[:300],
                    idempotency_key=request.idempotency_key,
                    correlation_id=request.correlation_id,
                    causation_id=str(request.event_id),
                ),
            ),
        ]

    def _dead_letter(
        self,
        request: CallRequested,
        source: Source,
        decision: RetryDecision,
        envelope: dict[str, bytes],
        error: BackboneError,
    ) -> list[Output]:
        reason = (
            DeadLetterReason.FATAL
            if decision.cause is DeadLetterCause.FATAL
            else DeadLetterReason.EXHAUSTED
        )
        event = self._dead_letter_event(request, source, envelope, reason, error)
        return [
            Output(
                DLT,
                event,
                key=request.service.encode(),
                headers={**envelope, h.DLT_REASON: reason.value.encode()},
            ),
            Output(RESULTS, event),
        ]

    def expired(
        self,
        request: CallRequested,
        source: Source,
        now: datetime,
        why: str,
        *,
        envelope: dict[str, bytes] | None = None,
        error: BackboneError | None = None,
    ) -> list[Output]:
        deadline = request.deadline or now
        expired_event = CallExpired(
            call_id=request.call_id,
            service=request.service,
            operation=request.operation,
            deadline=deadline,
            attempt=request.attempt,
            idempotency_key=request.idempotency_key,
            correlation_id=request.correlation_id,
            causation_id=str(request.event_id),
        )
        error = error or DeadlinePassedError(why)
        envelope = envelope or envelope_headers(request, source, error, now, request.attempt)
        dead = self._dead_letter_event(request, source, envelope, DeadLetterReason.EXPIRED, error)
        # Counted once, as expired, in calls.results; the dead letter keeps it re-drivable.
        return [
            Output(RESULTS, expired_event),
            Output(
                DLT,
                dead,
                key=request.service.encode(),
                headers={**envelope, h.DLT_REASON: DeadLetterReason.EXPIRED.value.encode()},
            ),
        ]

    def _dead_letter_event(
        self,
        request: CallRequested,
        source: Source,
        envelope: Mapping[str, bytes],
        reason: DeadLetterReason,
        error: BackboneError,
    ) -> CallDeadLettered:
        stamp = hd.text(envelope, h.DLT_ORIGINAL_TIMESTAMP)
        return CallDeadLettered(
            call_id=request.call_id,
            service=request.service,
            request=request,
            failure=DeadLetterEnvelope(
                reason=reason,
                original_topic=hd.text(envelope, h.DLT_ORIGINAL_TOPIC) or source.topic,
                original_partition=int(
                    hd.text(envelope, h.DLT_ORIGINAL_PARTITION) or source.partition
                ),
                original_offset=int(hd.text(envelope, h.DLT_ORIGINAL_OFFSET) or source.offset),
                original_timestamp=datetime.fromtimestamp(int(stamp) / 1000, UTC)
                if stamp
                else None,
                error_class=type(error).__name__,
                message=str(error)[:1000],
                attempts=int(hd.text(envelope, hd.DLT_ATTEMPTS) or request.attempt),
                first_failure_at=hd.parse_time(hd.text(envelope, hd.DLT_FIRST_FAILURE_AT))
                or self._now(),
                last_failure_at=hd.parse_time(hd.text(envelope, hd.DLT_LAST_FAILURE_AT))
                or self._now(),
                service=request.service,
            ),
            correlation_id=request.correlation_id,
            causation_id=str(request.event_id),
        )


def capped(body: str) -> tuple[str, int | None]:
    """The body, or its first :data:`MAX_RESPONSE_BYTES` (on a character boundary) and its size."""
    if len(body) * 4 <= MAX_RESPONSE_BYTES:
        return body, None  # even all-4-byte characters fit
    raw = body.encode("utf-8", "replace")
    if len(raw) <= MAX_RESPONSE_BYTES:
        return body, None
    return raw[:MAX_RESPONSE_BYTES].decode("utf-8", "ignore"), len(raw)


def envelope_headers(
    request: CallRequested, source: Source, error: BackboneError, now: datetime, attempts: int
) -> dict[str, bytes]:
    """The failure envelope, carried from the first failure through every tier."""
    carried = {k: v for k, v in source.headers.items() if k in hd.ENVELOPE_ORIGIN}
    origin = {
        h.DLT_ORIGINAL_TOPIC: source.topic.encode(),
        h.DLT_ORIGINAL_PARTITION: str(source.partition).encode(),
        h.DLT_ORIGINAL_OFFSET: str(source.offset).encode(),
        h.DLT_ORIGINAL_TIMESTAMP: str(source.timestamp_ms).encode(),
        hd.DLT_FIRST_FAILURE_AT: hd.iso(now),
    }
    return {
        **origin,
        **carried,
        h.DLT_ERROR_CLASS: type(error).__name__.encode(),
        hd.DLT_MESSAGE: str(error)[:1000].encode(),
        hd.DLT_SERVICE: request.service.encode(),
        hd.DLT_ATTEMPTS: str(attempts).encode(),
        hd.DLT_LAST_FAILURE_AT: hd.iso(now),
    }
