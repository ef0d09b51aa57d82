"""The executor: one call attempt, from a lane record to the events that account for it.

For each request it checks, in order: replay guard, idempotency (already succeeded?), deadline,
circuit breaker, rate limit; then runs the connector and turns the outcome into outputs:
``call.succeeded``; or ``call.failed`` plus a retry-tier record and ``call.retry_scheduled``; or a
dead letter (``calls.dlt`` record with the failure envelope as headers and typed event, plus
``call.dead_lettered`` in ``calls.results``); or ``call.expired``. Breaker transitions become
``integration.circuit_state_changed`` outputs. No Kafka here: the runtime writes the outputs and
then settles the :class:`Attempt` in the ledger (:meth:`CallExecutor.settle`).

Exactly-once execution: before a call is made its ``call.started`` claim goes through the
``journal`` (the runtime writes it to ``calls.claims`` and returns once the cluster acknowledged
it); see :mod:`agents.ledger` for how a claim without an outcome is recognised after a crash.
The claim is written only once the call holds its service's concurrency slot and rate-limit
token, right before it goes out, so a worker that dies while calls queue for a slot leaves no
claims for calls that never reached the service. (Records handled without calling the service,
e.g. expired or refused by an open circuit, are claimed before their outputs are written.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from agents import _headers as hd
from agents.errors import DeadlinePassedError, OutcomeUnknownError
from agents.ledger import GAVE_UP, SUCCEEDED, CallLedger, Claim
from agents.outputs import Output, Source
from agents.retry import DeadLetterCause, RetryDecision, Verdict, after_failure, expired
from agents.settings import WorkerSettings
from connectors.base import CallInput, CallOutput, Connector
from connectors.errors import CallError, CircuitOpenError, ConnectorNotFoundError
from connectors.resilience import (
    BreakerSnapshot,
    CircuitBreaker,
    CircuitState,
    StateChange,
    TokenBucket,
)
from streams import headers as h
from streams.errors import BackboneError
from streams.events.calls import (
    CallDeadLettered,
    CallExpired,
    CallFailed,
    CallRequested,
    CallRetryScheduled,
    CallStarted,
    CallSucceeded,
)
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.health import CircuitState as CircuitStateField
from streams.events.health import CircuitStateChanged, RateLimitChanged
from streams.headers import side_effects_allowed

log = logging.getLogger(__name__)

RESULTS = "calls.results"
DLT = "calls.dlt"
CIRCUITS = "integration.circuits"
HEALTH = "integration.health"

Now = Callable[[], datetime]
Journal = Callable[[CallStarted], Awaitable[None]]


@dataclass(frozen=True)
class Ticket:
    """A lane record the ledger let through: run it once its claim is durable."""

    request: CallRequested
    source: Source
    verdict: Claim
    started: CallStarted


@dataclass(frozen=True)
class Attempt:
    """What handling one lane record produced; settle it once its outputs are durable.

    Write :attr:`first` and wait for the acknowledgements, then :attr:`last`: the last record,
    in ``calls.results``, carries the claim id, so when the ledger sees it every output before
    it is durable too (``calls.results`` records of one call share a partition, kept in order).
    """

    key: str
    claim_id: str | None = None  # None: nothing was claimed (skipped)
    end: str | None = None  # ledger.SUCCEEDED / ledger.GAVE_UP when the call ended
    first: list[Output] = field(default_factory=list)
    last: list[Output] = field(default_factory=list)

    @property
    def outputs(self) -> list[Output]:
        return [*self.first, *self.last]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ServiceGuard:
    """Per-service limits: token bucket, circuit breaker, concurrency cap."""

    def __init__(
        self,
        connector: Connector,
        settings: WorkerSettings,
        max_concurrency: int,
        on_change: Callable[[StateChange], None],
    ) -> None:
        self.connector = connector
        self.bucket = TokenBucket(connector.rate_limit)
        self.breaker = CircuitBreaker(connector.service, settings.breaker, on_change=on_change)
        self.slots = asyncio.Semaphore(max_concurrency)


class CallExecutor:
    def __init__(
        self,
        settings: WorkerSettings,
        connectors: Mapping[str, Connector],
        ledger: CallLedger,
        *,
        now: Now = utc_now,
        on_circuit: Callable[[Output], None] | None = None,
        journal: Journal | None = None,
        worker: str = "worker",
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self._now = now
        self._journal = journal
        self._worker = worker
        self._dedupes = {s.name for s in settings.services if s.dedupes_by_key}
        #: Breaker transitions leave through here the moment they happen, so their order on
        #: ``integration.circuits`` is the order they happened in (not the order calls finish).
        self.circuit_log: list[Output] = []
        self._on_circuit = on_circuit or self.circuit_log.append
        per_service = {s.name: s.max_concurrency for s in settings.services}
        self.guards = {
            name: ServiceGuard(
                conn, settings, per_service.get(name, settings.max_in_flight), self._circuit_changed
            )
            for name, conn in connectors.items()
        }

    # --- restart ----------------------------------------------------------------------------------
    def restore_circuit(self, event: CircuitStateChanged) -> None:
        """Resume a breaker from its last recorded change (read back from ``integration.circuits``)."""
        guard = self.guards.get(event.service)
        if guard is None:
            return
        state = CircuitState(event.current.value)
        wait = guard.breaker.policy.open_wait_s
        if state is CircuitState.OPEN and event.open_until is not None:
            remaining = (event.open_until - self._now()).total_seconds()
            age = max(0.0, wait - remaining)
        else:
            age = (self._now() - event.occurred_at).total_seconds()
        guard.breaker.restore(BreakerSnapshot(state, age))

    # --- one record -------------------------------------------------------------------------------
    async def handle(self, request: CallRequested, source: Source) -> list[Output]:
        """Handle and settle at once (for callers whose outputs cannot fail to be written)."""
        attempt = await self.attempt(request, source)
        self.settle(attempt)
        return attempt.outputs

    def settle(self, attempt: Attempt, *, written: bool = True) -> None:
        """Tell the ledger whether the attempt's outputs are durable (``written``) or not."""
        if attempt.claim_id is None:
            return
        if written:
            self.ledger.finish(attempt.key, attempt.claim_id, attempt.end)
        else:
            self.ledger.abandon(attempt.key)

    async def attempt(self, request: CallRequested, source: Source) -> Attempt:
        """Handle one lane record: claim it and run it (the claim is journaled on the way)."""
        ticket = await self.claim(request, source)
        if ticket is None:
            return Attempt(request.idempotency_key)
        return await self.run(ticket)

    async def claim(self, request: CallRequested, source: Source) -> Ticket | None:
        """The ledger's verdict; None when the record is skipped. :meth:`run` it next."""
        key = request.idempotency_key
        if not self.settings.allow_replayed_calls and not side_effects_allowed(source.headers):
            log.info("skipped replayed call %s (side effects not allowed)", request.call_id)
            return None
        coords = (source.topic, source.partition, source.offset)
        verdict = await self.ledger.acquire(
            key, coords, redriven=hd.REDRIVEN_FROM in source.headers
        )
        if verdict is Claim.SKIP:
            log.info("skipped call %s: it was handled already", request.call_id)
            return None
        started = CallStarted(
            call_id=request.call_id,
            service=request.service,
            attempt=request.attempt,
            idempotency_key=key,
            claim_id=uuid.uuid4().hex,
            lane_topic=source.topic,
            lane_partition=source.partition,
            lane_offset=source.offset,
            worker=self._worker,
            correlation_id=request.correlation_id,
            causation_id=str(request.event_id),
        )
        return Ticket(request, source, verdict, started)

    async def journal(self, ticket: Ticket) -> None:
        """Make the ticket's claim durable; only then may it run."""
        key = ticket.started.idempotency_key
        try:
            if self._journal is not None:
                await self._journal(ticket.started)
        except BaseException:
            self.ledger.abandon(key)
            raise
        source = ticket.source
        self.ledger.claimed(
            key, ticket.started.claim_id, (source.topic, source.partition, source.offset)
        )

    async def run(self, ticket: Ticket) -> Attempt:
        """Run a ticket (or account for it without running, if its outcome is unknown). Its claim
        is journaled right before the call goes out, or before returning if no call is made."""
        request, source, started = ticket.request, ticket.source, ticket.started
        key = started.idempotency_key
        journaled = False

        async def journal() -> None:
            nonlocal journaled
            if not journaled:
                await self.journal(ticket)
                journaled = True

        try:
            if ticket.verdict is Claim.UNKNOWN and request.service not in self._dedupes:
                unknown = OutcomeUnknownError(
                    "a worker stopped while handling this call and its outcome was not recorded; "
                    f"not run again because {request.service!r} does not dedupe by idempotency "
                    "key (re-drive it to run it again)"
                )
                outputs = self._failed(request, source, unknown, None, counts=False)
            else:
                outputs = await self._attempt(request, source, journal)
            await journal()  # no-op when the call went out (journaled then)
        except BaseException:
            self.ledger.abandon(key)
            raise
        ended = {o.event.event_type for o in outputs if o.topic == RESULTS}
        end = (
            SUCCEEDED
            if "call.succeeded" in ended
            else GAVE_UP
            if ended & {"call.dead_lettered", "call.expired"}
            else None
        )
        first = [o for o in outputs if o.topic != RESULTS]
        last = [o for o in outputs if o.topic == RESULTS]  # one partition (key call_id), in order
        stamp = {h.IDEMPOTENCY_KEY: key.encode(), h.CLAIM: started.claim_id.encode()}
        if end is not None:
            stamp[h.CALL_END] = end.encode()
        last[-1] = replace(last[-1], headers={**last[-1].headers, **stamp})
        return Attempt(key, started.claim_id, end, first, last)

    async def _attempt(
        self, request: CallRequested, source: Source, journal: Callable[[], Awaitable[None]]
    ) -> list[Output]:
        now = self._now()
        if expired(request.deadline, now):
            return self._expire(request, source, now, "deadline passed before the attempt")
        guard = self.guards.get(request.service)
        if guard is None:
            error = ConnectorNotFoundError(
                f"no connector configured for service {request.service!r}"
            )
            return self._failed(request, source, error, None, counts=True)
        if not guard.breaker.try_acquire():
            refused = CircuitOpenError(f"circuit for {request.service!r} is open")
            outputs = self._failed(
                request,
                source,
                refused,
                None,
                counts=False,
                circuit_open_s=guard.breaker.open_remaining(),
            )
            return outputs
        timeout = (request.timeout_ms or 0) / 1000 or self.settings.default_timeout_s
        if request.deadline is not None:
            timeout = min(timeout, max(0.001, (request.deadline - now).total_seconds()))
        async with guard.slots:
            try:
                await guard.bucket.acquire()
                await journal()  # the call goes out right after its claim is durable
            except BaseException:
                guard.breaker.release()  # the permit was not used: no call went out
                raise
            began = time.monotonic()
            try:
                call = CallInput.from_json(
                    request.call_id,
                    request.operation,
                    request.payload,
                    request.idempotency_key,
                    timeout,
                )
                output = await guard.connector.execute(call)
            except CallError as exc:
                took = time.monotonic() - began
                guard.breaker.record(failed=exc.retriable, duration_s=took)
                if exc.retry_after_s:
                    guard.bucket.block_for(exc.retry_after_s)
                outputs = self._failed(request, source, exc, took, counts=True)
                return outputs
            except BackboneError as exc:  # credentials and other fatal setup errors
                took = time.monotonic() - began
                return self._failed(request, source, exc, took, counts=True)
        took = time.monotonic() - began
        guard.breaker.record(failed=False, duration_s=took)
        outputs = self._succeeded(request, output, took)
        if (update := guard.bucket.update(output.headers)) is not None:
            outputs.append(
                Output(
                    HEALTH,
                    RateLimitChanged(
                        service=request.service,
                        limit_per_second=update.rate,
                        burst=update.burst,
                        reason=update.reason,
                    ),
                )
            )
        return outputs

    # --- outputs ----------------------------------------------------------------------------------
    def _succeeded(self, request: CallRequested, output: CallOutput, took: float) -> list[Output]:
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
            response=output.body,
            correlation_id=request.correlation_id,
            causation_id=str(request.event_id),
        )
        # calls.results is the accounting trail: it always gets the outcome; reply_to a copy
        outputs = [Output(RESULTS, event)]
        if request.reply_to and request.reply_to != RESULTS:
            outputs.append(Output(request.reply_to, event))
        return outputs

    def _circuit_changed(self, change: StateChange) -> None:
        open_until = None
        if change.state is CircuitState.OPEN:
            open_until = self._now() + _seconds(change.open_for_s)
        event = CircuitStateChanged(
            service=change.service,
            previous=CircuitStateField(change.previous.value),
            current=CircuitStateField(change.state.value),
            reason=f"failure rate {change.failure_rate:.0%}, slow-call rate "
            f"{change.slow_call_rate:.0%} over {change.calls} calls",
            failure_count=round(change.failure_rate * change.calls),
            open_until=open_until,
        )
        self._on_circuit(Output(CIRCUITS, event))

    def _failed(
        self,
        request: CallRequested,
        source: Source,
        error: BackboneError,
        took: float | None,
        *,
        counts: bool,
        circuit_open_s: float | None = None,
    ) -> list[Output]:
        """A failed attempt: ``call.failed`` and then a retry, a dead letter or expiry."""
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
        # A refused call (open circuit) did not reach the provider: it does not use up an attempt.
        attempts = request.attempt + 1 if counts else max(1, request.attempt)
        decision = after_failure(
            attempts=attempts,
            retriable=error.retriable,
            now=now,
            policy=self.settings.retry,
            deadline=request.deadline,
            retry_after_s=retry_after,
            circuit_open_s=circuit_open_s,
        )
        envelope = _envelope_headers(request, source, error, now, attempts)
        if decision.verdict is Verdict.RETRY:
            outputs += self._retry(request, decision, envelope, error, counts)
        elif decision.verdict is Verdict.EXPIRE:
            outputs += self._expire(
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
        counts: bool,
    ) -> list[Output]:
        assert decision.tier is not None
        assert decision.due_at is not None
        next_attempt = request.attempt + 1 if counts else request.attempt
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

    def _expire(
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
        envelope = envelope or _envelope_headers(request, source, error, now, request.attempt)
        dead = self._dead_letter_event(request, source, envelope, DeadLetterReason.EXPIRED, error)
        # Counted once, as expired, in calls.results; the dead letter keeps it re-drivable.
        return [
            Output(RESULTS, expired_event),
            Output(
                DLT,
                dead,
                key=request.service.encode(),
                headers={**envelope, h.DLT_REASON: b"expired"},
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


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _envelope_headers(
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
