"""How both call runtimes write: forwarded request bytes, raw dead letters, and attempts.

Everything goes through one :class:`~streams.producer.Publisher` (acks=all, idempotent): records
are handed over first and their acknowledgements awaited together, and nothing is acked upstream
before that. Lane records are handled in batches (:meth:`CallWriter.execute`): each record's claim
once it holds its lane's execution slot and its service's concurrency slot (claims handed over in
one loop turn share a produce batch), then the call, then its outputs in two phases (see :class:`~agents.executor.Attempt`), then settlement
in the call ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.app import decode
from agents.dispatch import LaneDispatcher
from agents.errors import AgentError
from agents.executor import Attempt, CallExecutor, Ticket
from agents.lanes import Lane
from agents.outputs import Forward, OutputWriter, Source, dead_letter_of, forward_headers
from agents.router import misrouted
from agents.settings import WorkerSettings
from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.calls import CallRequested
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from streams.tracing import consumed, current_traceparent

log = logging.getLogger(__name__)


class CallWriter(OutputWriter):
    def __init__(self, publisher: Publisher, catalogue: Catalogue) -> None:
        super().__init__(publisher)
        self._catalogue = catalogue
        self._real: dict[str, str] = {}

    def real(self, logical: str) -> str:
        name = self._real.get(logical)
        if name is None:
            name = self._real[logical] = self._catalogue.name(logical)
        return name

    async def forward(self, value: bytes, source: Source, output: Forward) -> asyncio.Future[Any]:
        """A request's own bytes to ``output.topic`` (no re-encode), with the headers an encode
        would have set. The hop is a span (``calls.route`` from the router, ``calls.retry`` from a
        retry tier) continuing the source record's trace; the forwarded record carries it."""
        with consumed(_hop_name(source.topic), source.headers, topic=source.topic):
            headers = forward_headers(value, output, source)
            if (traceparent := current_traceparent()) is not None:
                headers[h.TRACEPARENT] = traceparent.encode()
            return await self.publisher.send_raw(
                self.real(output.topic), output.key, value, list(headers.items())
            )

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, source: Source, error: BackboneError
    ) -> asyncio.Future[Any]:
        """An unusable record, byte for byte, to its topic's dead letter with the reason."""
        target, headers = dead_letter_of(self._catalogue, source, error)
        return await self.publisher.send_raw(target, key, value or b"", list(headers.items()))

    async def request_of(
        self, codec: Codec, key: bytes | None, value: bytes | None, source: Source
    ) -> CallRequested | asyncio.Future[Any]:
        """The record's call request, or (for an unusable record) the pending ack of its dead
        letter. A retriable error (the registry is away) is raised: read the record again."""
        error: BackboneError
        try:
            event = await decode(codec, value)
        except BackboneError as exc:
            if exc.retriable:
                raise
            error = exc
        else:
            if isinstance(event, CallRequested):
                return event
            error = AgentError(f"unexpected {event.event_type} in {source.topic}")
        return await self.dead_letter(key, value, source, error)

    async def refuse(
        self, executor: CallExecutor, request: CallRequested, source: Source, error: BackboneError
    ) -> list[asyncio.Future[Any]]:
        """End a call without running it (``error`` is why); returns the pending acks."""
        return await self.send(executor.refused(request, source, error))

    async def execute(
        self, executor: CallExecutor, dispatcher: LaneDispatcher, items: Sequence[LaneItem]
    ) -> None:
        """Handle a batch of lane records: each is claimed once it holds its execution slots
        (claims granted together share one write), run, its outputs written, then settled.

        A record whose key runs already (here or earlier in the batch) is handled after the
        batch: it waits for the first copy to settle and usually finds it done.
        """
        tickets: list[tuple[LaneItem, Ticket]] = []
        later: list[LaneItem] = []
        taken: set[str] = set()
        kept = await self._rerouted(items)
        executor.ledger.prefetch(item.request.idempotency_key for item in kept)
        for item in kept:
            key = item.request.idempotency_key
            if key in taken or executor.ledger.running(key):
                later.append(item)
                continue
            ticket = await executor.claim(item.request, item.source)
            if ticket is not None:
                taken.add(key)
                tickets.append((item, ticket))
        await self._execute(executor, dispatcher, tickets)
        for item in later:
            ticket = await executor.claim(item.request, item.source)
            if ticket is not None:
                await self._execute(executor, dispatcher, [(item, ticket)])

    async def _rerouted(self, items: Sequence[LaneItem]) -> list[LaneItem]:
        """The items to run here; a lane record whose request names another lane or service key
        (its producer's routing headers disagreed with its value) is sent on there first."""
        pending: list[asyncio.Future[Any]] = []
        kept: list[LaneItem] = []
        for item in items:
            elsewhere = misrouted(item.request, item.key, item.lane, item.source)
            if not elsewhere:
                kept.append(item)
                continue
            log.warning(
                "call %s was routed to the wrong lane (its routing headers disagree with the "
                "request); sent on to %s",
                item.request.call_id,
                elsewhere[0].topic,
            )
            for forward in elsewhere:
                pending.append(await self.forward(item.value or b"", item.source, forward))
        await self.acknowledged(pending)
        return kept

    async def _execute(
        self,
        executor: CallExecutor,
        dispatcher: LaneDispatcher,
        tickets: Sequence[tuple[LaneItem, Ticket]],
    ) -> None:
        # each call's outputs are written as soon as it ends (outputs of calls ending in the same
        # loop turn still share produce batches); a failure elsewhere in the batch does not hold
        # back outcomes that are real
        done = await asyncio.gather(
            *(self._run_and_write(executor, dispatcher, item, t) for item, t in tickets),
            return_exceptions=True,
        )
        for failure in done:
            if isinstance(failure, BaseException):
                raise failure

    async def _run_and_write(
        self, executor: CallExecutor, dispatcher: LaneDispatcher, item: LaneItem, ticket: Ticket
    ) -> None:
        attempt = await self._run(executor, dispatcher, item, ticket)
        if attempt is not None:
            await self.write(executor, attempt)

    async def _run(
        self, executor: CallExecutor, dispatcher: LaneDispatcher, item: LaneItem, ticket: Ticket
    ) -> Attempt | None:
        try:  # run journals the claim once the call holds its service's slot
            return await dispatcher.run(item.lane, lambda: executor.run(ticket))
        except BaseException as exc:
            executor.ledger.abandon(ticket.started.idempotency_key)  # no-op if settled
            if isinstance(exc, BackboneError) or not isinstance(exc, Exception):
                raise  # e.g. Kafka away: the batch is read again
            bug = exc
        # a bug must not stall the lane, nor leave the call without an outcome: it is the
        # call's fatal failure, with the bug as its reason
        log.error("executor failed on %s", item.request.call_id, exc_info=bug)
        try:
            return executor.crashed(ticket, bug)
        except Exception as again:  # not even a failure outcome can be built: the raw record
            log.error("no outcome for %s", item.request.call_id, exc_info=again)
        dead = await self.dead_letter(item.key, item.value, item.source, AgentError(repr(bug)))
        await self.acknowledged([dead])
        return None

    async def write(
        self, executor: CallExecutor, attempt: Attempt, *, fallback: bool = True
    ) -> None:
        """Write an attempt's outputs in their two phases, then settle it in the ledger.

        An output refused for good (too large, a topic not in the catalogue) is not a batch
        failure, which would be read again forever: the call fails with that reason instead.
        """
        try:
            await self.write_phases(attempt.first, attempt.last)
        except BackboneError as exc:
            if exc.retriable or attempt.ticket is None or not fallback:
                executor.settle(attempt, written=False)
                raise
            log.error("outcome of %s not writable: %s", attempt.ticket.request.call_id, exc)
            await self.write(executor, executor.unwritable(attempt, exc), fallback=False)
            return
        except BaseException:
            executor.settle(attempt, written=False)
            raise
        executor.settle(attempt)


def _hop_name(source_topic: str) -> str:
    if source_topic == "calls.requests":
        return "calls.route"
    if source_topic.startswith("calls.retry."):
        return "calls.retry"
    return f"calls.forward {source_topic}"


@dataclass(frozen=True)
class LaneItem:
    """A decoded lane record."""

    key: bytes | None
    value: bytes | None
    source: Source
    request: CallRequested
    lane: Lane


@dataclass(frozen=True)
class Pipeline:
    """What both runtimes are built from (one per worker)."""

    kafka: KafkaSettings
    codec: Codec
    catalogue: Catalogue
    settings: WorkerSettings
    executor: CallExecutor
    dispatcher: LaneDispatcher
    writer: CallWriter
