"""The executor: one call attempt, from a lane record to the events that account for it.

For each request it checks, in order: replay guard, idempotency (already succeeded?), whether it
can run at all, deadline, circuit breaker, rate limit; then runs the connector and has
:class:`~agents.outcomes.Outcomes` turn what happened into outputs. Breaker transitions become
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

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agents import _headers as hd
from agents.errors import AttemptCrashedError, OutcomeUnknownError, OutcomeUnwritableError
from agents.ledger import GAVE_UP, SUCCEEDED, CallLedger, Claim
from agents.outcomes import RESULTS, Outcomes
from agents.outputs import Output, Source
from agents.retry import CircuitWait, expired
from agents.settings import WorkerSettings
from connectors.base import CallInput, Connector
from connectors.errors import (
    CallError,
    CircuitOpenError,
    ConnectorNotFoundError,
    ProviderThrottledError,
    UnsendableRequestError,
)
from connectors.resilience import (
    BreakerSnapshot,
    CircuitBreaker,
    CircuitState,
    RateLimitUpdate,
    StateChange,
    TokenBucket,
)
from connectors.resilience._ratelimit import THROTTLE_S
from streams import headers as h
from streams.errors import BackboneError
from streams.events.calls import CallRequested, CallStarted
from streams.events.health import CircuitState as CircuitStateField
from streams.events.health import CircuitStateChanged, RateLimitChanged
from streams.headers import side_effects_allowed
from streams.topics import Catalogue
from streams.tracing import consumed, current_traceparent, recording

log = logging.getLogger(__name__)
#: a wait for a rate limit's token this long is said at INFO, at most every THROTTLE_NOTE_EVERY_S
THROTTLE_NOTE_S = 1.0
THROTTLE_NOTE_EVERY_S = 60.0
#: Unacknowledged successes kept to be written again (each holds its outputs; a key whose record
#: went to another worker at a rebalance is forgotten here once the bound is reached).
MAX_UNACKNOWLEDGED = 10_000
_TRACER = trace.get_tracer("backbone.agents")

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
    ticket: Ticket | None = None  # what was run (None: skipped)

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
        self._said_waiting = -THROTTLE_NOTE_EVERY_S

    def waited(self, seconds: float) -> None:
        """A call waited ``seconds`` for a token: said at INFO (at most once a minute) when it is
        long, since calls above the rate limit otherwise show only as lane lag."""
        now = time.monotonic()
        if seconds < THROTTLE_NOTE_S or now - self._said_waiting < THROTTLE_NOTE_EVERY_S:
            return
        self._said_waiting = now
        bucket = self.bucket
        log.info(
            "service %s: calls wait %.1f s for its rate limit (%g/s, burst %d); the rest wait in "
            "Kafka as lane lag", self.connector.service, seconds, bucket.rate, bucket.burst,
        )  # fmt: skip


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
        topics: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self._longest_timeout_s = settings.longest_call_timeout_s  # a scan of the services
        self._topics = topics  # reply_to must name one of its topics
        self.ledger = ledger
        self._now = now
        self.outcomes = Outcomes(settings, now)
        self._journal = journal
        self._worker = worker
        self._dedupes = {s.name for s in settings.services if s.dedupes_by_key}
        #: Successes whose outputs Kafka did not acknowledge, by key (oldest first, bounded):
        #: written again if their lane record comes back, not judged unknown (:meth:`run`).
        self._unacknowledged: dict[str, Attempt] = {}
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
            self._unacknowledged.pop(attempt.key, None)
        else:
            self.ledger.abandon(attempt.key)
            if attempt.end == SUCCEEDED:
                self._unacknowledged.pop(attempt.key, None)
                self._unacknowledged[attempt.key] = attempt
                if len(self._unacknowledged) > MAX_UNACKNOWLEDGED:
                    del self._unacknowledged[next(iter(self._unacknowledged))]

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
            if (retained := self._succeeded_unacknowledged(ticket)) is not None:
                log.warning(
                    "call %s: Kafka did not acknowledge its success; writing the same outcome "
                    "again (a consumer may see it twice, with one event_id)",
                    request.call_id,
                )
                outputs = retained
            elif ticket.verdict is Claim.UNKNOWN and request.service not in self._dedupes:
                unknown = OutcomeUnknownError(
                    "a worker stopped while handling this call and its outcome was not recorded; "
                    f"not run again because {request.service!r} does not dedupe by idempotency "
                    "key (re-drive it to run it again)"
                )
                outputs = self.outcomes.failed(request, source, unknown, None)
            else:
                with consumed("call.execute", source.headers, topic=source.topic):
                    outputs = _traced(await self._attempt(request, source, journal))
            await journal()  # no-op when the call went out (journaled then)
        except BaseException:
            self.ledger.abandon(key)
            raise
        return self._account(ticket, outputs)

    def _succeeded_unacknowledged(self, ticket: Ticket) -> list[Output] | None:
        """The outputs of this very lane record's success, if writing them was not acknowledged.

        Such a write may yet become durable (a leader that appended it can still commit it once
        its followers return), so judging the call unknown could give it two contradictory
        outcomes: written again instead, the same events with their event ids, it ends once
        (at worst a record seen twice, deduplicated by ``event_id``).
        """
        if ticket.verdict is not Claim.UNKNOWN:
            return None
        retained = self._unacknowledged.get(ticket.started.idempotency_key)
        if retained is None or retained.ticket is None:
            return None
        before, now = retained.ticket.source, ticket.source
        if (before.topic, before.partition, before.offset) != (
            now.topic,
            now.partition,
            now.offset,
        ):
            return None
        return retained.outputs

    def crashed(self, ticket: Ticket, error: Exception) -> Attempt:
        """The attempt raised something unexpected (a bug): the call's fatal failure, with it
        as the reason, so it still reaches exactly one terminal outcome."""
        crash = AttemptCrashedError(f"the attempt failed unexpectedly: {error!r}"[:500])
        return self._account(
            ticket, self.outcomes.failed(ticket.request, ticket.source, crash, None)
        )

    def unwritable(self, attempt: Attempt, error: BackboneError) -> Attempt:
        """The attempt's outputs cannot be written (an output refused as too large, to a topic
        not in the catalogue...): the call's fatal failure instead, with that reason."""
        assert attempt.ticket is not None
        ticket = attempt.ticket
        refused = OutcomeUnwritableError(f"the outcome could not be written: {error}"[:500])
        return self._account(
            ticket, self.outcomes.failed(ticket.request, ticket.source, refused, None)
        )

    def refused(self, request: CallRequested, source: Source, error: BackboneError) -> list[Output]:
        """Outputs ending a call that is not run (e.g. a poison retry record): its fatal failure."""
        return self.outcomes.failed(request, source, error, None)

    def _account(self, ticket: Ticket, outputs: list[Output]) -> Attempt:
        """Split outputs into the two write phases; stamp the last with the claim (and end)."""
        key, started = ticket.started.idempotency_key, ticket.started
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
        return Attempt(key, started.claim_id, end, first, last, ticket)

    def _unrunnable(self, request: CallRequested) -> UnsendableRequestError | None:
        """Why this request can never run as given (checked before the provider is called)."""
        problem = None
        if request.attempt < 0:
            problem = f"attempt must be 0 or more, not {request.attempt}"
        elif request.timeout_ms is not None and request.timeout_ms <= 0:
            problem = f"timeout_ms must be positive, not {request.timeout_ms}"
        elif request.reply_to and self._topics is not None:
            try:
                self._topics.spec(request.reply_to)
            except BackboneError:
                problem = f"reply_to {request.reply_to[:200]!r} is not a topic of the catalogue"
        return None if problem is None else UnsendableRequestError(problem)

    async def _attempt(
        self, request: CallRequested, source: Source, journal: Callable[[], Awaitable[None]]
    ) -> list[Output]:
        if (invalid := self._unrunnable(request)) is not None:
            return self.outcomes.failed(request, source, invalid, None)
        now = self._now()
        if expired(request.deadline, now):
            return self.outcomes.expired(request, source, now, "deadline passed before the attempt")
        guard = self.guards.get(request.service)
        if guard is None:
            error = ConnectorNotFoundError(
                f"no connector configured for service {request.service!r}"
            )
            return self.outcomes.failed(request, source, error, None)
        if not guard.breaker.try_acquire():
            # an attempt that spends the call's budget like a failure: see agents.retry
            refused = CircuitOpenError(f"circuit for {request.service!r} is open")
            wait = CircuitWait(guard.breaker.open_remaining(), guard.breaker.policy.open_wait_s)
            return self.outcomes.failed(request, source, refused, None, circuit=wait)
        timeout = (request.timeout_ms or 0) / 1000 or self.settings.default_timeout_s
        timeout = min(timeout, self._longest_timeout_s)  # the drain covers this
        if request.deadline is not None:
            timeout = min(timeout, max(0.001, (request.deadline - now).total_seconds()))
        async with guard.slots:
            try:
                guard.waited(await guard.bucket.acquire())
                await journal()  # the call goes out right after its claim is durable
            except BaseException:
                guard.breaker.release()  # the permit was not used: no call went out
                raise
            # the first call out after a 429's pause reports that the pause is over
            changes = [lifted] if (lifted := guard.bucket.lifted()) is not None else []
            outputs = await self._call(guard, request, source, timeout, changes)
        return outputs + [_rate_limit_changed(request.service, c) for c in changes]

    async def _call(
        self,
        guard: ServiceGuard,
        request: CallRequested,
        source: Source,
        timeout: float,
        changes: list[RateLimitUpdate],
    ) -> list[Output]:
        """The provider call itself and the outputs of what it answered; the rate limit state
        it changed is added to ``changes``."""
        began = time.monotonic()
        try:
            call = CallInput.from_json(
                request.call_id,
                request.operation,
                request.payload,
                request.idempotency_key,
                timeout,
            )
            if recording():
                with _TRACER.start_as_current_span(
                    f"{request.service} {request.operation}", kind=SpanKind.CLIENT
                ):
                    output = await guard.connector.execute(call)
            else:  # no SDK: the span would be a no-op, and its context work is per call
                output = await guard.connector.execute(call)
        except CallError as exc:
            took = time.monotonic() - began
            guard.breaker.record(failed=exc.retriable, duration_s=took)
            if exc.status == 429 or isinstance(exc, ProviderThrottledError):
                change = guard.bucket.throttle(exc.retry_after_s, _throttle_reason(exc))
                changes.extend([change] if change is not None else [])
            elif exc.retry_after_s:
                guard.bucket.block_for(exc.retry_after_s)
            return self.outcomes.failed(request, source, exc, took)
        except BackboneError as exc:  # credentials and other fatal setup errors
            took = time.monotonic() - began
            guard.breaker.release()  # no word on the service: a half-open probe is free again
            return self.outcomes.failed(request, source, exc, took)
        except Exception as exc:  # a connector bug: this call's failure, not the batch's
            took = time.monotonic() - began
            guard.breaker.release()
            log.error("connector %s failed on %s", request.service, request.call_id, exc_info=exc)
            crash = AttemptCrashedError(f"the connector failed unexpectedly: {exc!r}"[:500])
            return self.outcomes.failed(request, source, crash, took)
        except BaseException:  # cancelled (a drain past its timeout): the probe never reported
            guard.breaker.release()
            raise
        took = time.monotonic() - began
        guard.breaker.record(failed=False, duration_s=took)
        if (update := guard.bucket.update(output.headers)) is not None:
            changes.append(update)
        return self.outcomes.succeeded(request, output, took)

    # --- outputs ----------------------------------------------------------------------------------
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


def _rate_limit_changed(service: str, change: RateLimitUpdate) -> Output:
    event = RateLimitChanged(
        service=service,
        limit_per_second=change.rate,
        burst=change.burst,
        previous_limit_per_second=change.previous_rate,
        reason=change.reason,
    )
    return Output(HEALTH, event)


def _throttle_reason(error: CallError) -> str:
    if error.retry_after_s:
        return f"429 Retry-After: {error.retry_after_s:g} s"
    return f"429 without Retry-After: paused {THROTTLE_S:g} s"


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _traced(outputs: list[Output]) -> list[Output]:
    """Outputs carry the current span's context, so the trace goes on past the writer."""
    traceparent = current_traceparent()
    if traceparent is None:
        return outputs
    mark = {h.TRACEPARENT: traceparent.encode()}
    return [replace(o, headers={**o.headers, **mark}) for o in outputs]
