"""The Faust runtime of the call pipeline (``runtime = "faust"``): router, lanes, retry tiers as
faust-streaming agents, at-least-once, writing through the same :class:`~agents._writer.CallWriter`
as the default aiokafka runtime (:mod:`agents._kafka_calls`).

Faust's exactly-once processing is not offered: its transactions follow Faust's commit interval,
not a record's outputs, and in the kill -9 accounting test an aborted transaction split one
attempt's outputs (its ``call.retry_scheduled`` committed, its retry record did not), so a call
was lost. A call is executed at most once by the call ledger under either runtime instead.
Lane agents run one actor each (batches of ``lane_prefetch`` records, run concurrently):
with ``concurrency > 1`` faust-streaming 0.15 can commit past a record another actor still
processes (faust-streaming #606), and a crash then loses it (seen in the kill test).
Faust acks a ``take_events`` batch in a ``finally``, also one that failed or was cancelled; a
lane batch, a router batch or a retry-tier record whose outputs were not all written (raised or
cancelled) is therefore left unacknowledged (below), so it is read again, never committed
unhandled (a router batch acked after its forwards were withdrawn lost its calls in the
worker-kill test). An agent actor that raises is not silent: the error is logged here, Faust logs
the crash with its traceback and its supervisor starts a new actor on the same stream. Caveat
kept: throughput is bound by Faust's per-event overhead.

Before the first record of a lane partition since it was assigned is claimed, the call ledger
reads ``calls.claims`` and ``calls.results`` to their end, as the aiokafka runtime does on
assignment: a record its previous owner ran but had not committed is then skipped, not run again.

A rebalance drains the lanes first, as the aiokafka runtime's stages do: the app runs with
``stream_wait_empty=False`` (a revoke does not wait for streams; a retry tier's record can wait
minutes for its due time), so the revoke handler itself waits (up to ``drain_timeout_s``) for the
lane batch in hand; only then may the partitions move. Without that a worker still ran a batch of
a partition the group had given to another worker, which, having caught its ledger up before the
first worker wrote its claims, ran the same records again (one call reached the provider twice;
others ended twice, ``call.succeeded`` and an "unknown" dead letter; seen in the worker-kill fleet
test). A batch yielded after a revoke waits for the new assignment; its records of partitions no
longer held are dropped *unacknowledged* (Faust's ``take_events`` acks a batch in a ``finally``;
a held reference keeps that ack from counting), and Faust's ack bookkeeping of partitions no
longer held is forgotten at each assignment (faust-streaming 0.15 keeps it, and a partition that
comes back later would commit from those stale acks).
Lane batches run one after another, so a lane's calls are spread over several batches when
records arrive apart (the breaker test sees this as more attempts in flight when it opens).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from agents import _headers as hd
from agents._writer import LaneItem, Pipeline
from agents.app import acked_only_if_done, create_app, source_of, unacknowledged
from agents.errors import RetryDueTooLateError
from agents.lanes import Lane
from agents.ledger import LedgerFollower
from agents.outputs import Source
from agents.retry import due_too_late
from agents.router import Routing, back_to_lane, route, routing_from_headers
from streams.errors import BackboneError
from streams.events.calls import CallRequested

log = logging.getLogger(__name__)


class FaustCalls:
    def __init__(
        self, parts: Pipeline, ledger: LedgerFollower, *, datadir: Path | None = None
    ) -> None:
        self.kafka, self.codec, self.catalogue = parts.kafka, parts.codec, parts.catalogue
        self.settings = parts.settings
        self.executor, self.dispatcher, self.writer = parts.executor, parts.dispatcher, parts.writer
        self.ledger = ledger
        self._datadir = datadir
        self.app: faust.App | None = None
        #: lane partitions (real topic, partition) the ledger caught up for since their assignment
        self._caught_up: set[tuple[str, int]] = set()
        #: set while no rebalance is under way (cleared on revoke, set on assignment)
        self._settled = asyncio.Event()
        self._settled.set()
        #: lane batches being handled, and set when there are none
        self._in_hand = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        app = create_app(self.kafka, self.settings, datadir=self._datadir)
        self._define_agents(app)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_partitions_assigned.connect(self._assigned)
        self.app = app
        await app.start()

    async def _revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Before the partitions move: no new lane batch starts, the one in hand finishes."""
        self._settled.clear()
        await self._drained("its partitions were revoked")
        self._caught_up.clear()  # whatever comes back may have been run by another worker

    async def _assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if self.app is not None:
            _forget_acks(self.app.consumer, self.app.consumer.assignment())
        self._settled.set()

    async def _owned(self, events: list[Any]) -> list[Any]:
        """The events of partitions this worker holds, once no rebalance is under way; any
        other (fetched before a revoke) is left unacknowledged, for its new owner to run."""
        await self._settled.wait()
        assert self.app is not None
        held = self.app.consumer.assignment()
        kept = []
        for event in events:
            if event.message.tp in held:
                kept.append(event)
            else:
                unacknowledged([event])
        if len(kept) < len(events):
            log.info("dropped %d lane records of revoked partitions", len(events) - len(kept))
        return kept

    async def _catch_up(self, events: list[Any]) -> None:
        """Before the first records of a lane partition since its assignment are claimed, the
        ledger holds every claim and outcome written so far (its previous owner's too). Until
        it can, the lane waits: running a call without knowing them could run it twice."""
        fresh = {(e.message.topic, e.message.partition) for e in events} - self._caught_up
        while fresh:
            try:
                await self.ledger.caught_up()
            except (TimeoutError, BackboneError) as exc:
                log.warning("lane waits: the call ledger cannot read its topics (%s)", exc)
                await asyncio.sleep(1.0)
                continue
            self._caught_up |= fresh
            return

    def problems(self) -> dict[str, str]:
        """None of its own: Faust's supervisor restarts a crashed actor (and logs it)."""
        return {}

    async def stop(self) -> None:
        """No new lane batch starts; the one in hand finishes (bounded) before Faust stops its
        agents: a batch Faust cancels is left unacknowledged, so its calls are read again."""
        if self.app is not None:
            self._settled.clear()
            await self._drained("stopping")
            await self.app.stop()
            self.app = None

    async def _drained(self, why: str) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.drain_timeout_s)
        except TimeoutError:
            log.warning(
                "a lane batch still runs %.0f s after %s", self.settings.drain_timeout_s, why
            )

    async def _decoded(self, event: Any) -> tuple[CallRequested, Source] | None:
        """The event's request; an unusable record is dead-lettered byte for byte."""
        source = source_of(event, self.catalogue)
        got = await self.writer.request_of(self.codec, event.key, event.value, source)
        if isinstance(got, CallRequested):
            return got, source
        await self.writer.acknowledged([got])
        return None

    async def _routing(self, event: Any) -> tuple[Routing | None, Source]:
        """A request's routing from its headers, else decoded (None: it was dead-lettered)."""
        source = source_of(event, self.catalogue)
        routing = routing_from_headers(source.headers, event.value)
        if routing is not None:
            return routing, source
        got = await self.writer.request_of(self.codec, event.key, event.value, source)
        if isinstance(got, CallRequested):
            return Routing.of(got), source
        await self.writer.acknowledged([got])
        return None, source

    async def _retried(self, event: Any) -> None:
        """A retry tier's record: back to its lane once due (or ended if due too late)."""
        cat, writer = self.catalogue, self.writer
        source = source_of(event, cat)
        due = hd.parse_time(hd.text(source.headers, hd.DUE_AT))
        why = due_too_late(due, _tier(source), self.settings.retry, datetime.now(UTC))
        if why is not None:  # would hold its partition for good: end the call
            got = await self._decoded(event)
            if got is not None:
                error = RetryDueTooLateError(why)
                await writer.acknowledged(await writer.refuse(self.executor, got[0], got[1], error))
            return
        if due is not None:
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0:  # only this partition's actor waits (isolated partitions)
                await asyncio.sleep(wait)
        routing, source = await self._routing(event)
        if routing is None:
            return
        [back] = back_to_lane(routing, source)
        await writer.acknowledged([await writer.forward(event.value, source, back)])

    def _define_agents(self, app: faust.App) -> None:
        cat, writer = self.catalogue, self.writer

        async def router(stream: Any) -> None:
            # Batches: a request's headers (else its decoded value) pick the lane and its
            # original bytes are forwarded; the batch's acknowledgements are awaited together
            # before Faust may ack its offsets.
            async for events in stream.take_events(500, within=self.settings.batch_wait_s):
                with acked_only_if_done(events, "router"):
                    now = datetime.now(UTC)
                    pending = []
                    for event in events:
                        routing, source = await self._routing(event)
                        if routing is None:
                            continue
                        for output in route(
                            routing,
                            source,
                            now=now,
                            allow_replayed=self.settings.allow_replayed_calls,
                        ):
                            pending.append(await writer.forward(event.value, source, output))
                    await writer.acknowledged(pending)

        app.agent(
            app.topic(cat.name("calls.requests"), value_type=bytes, key_type=bytes), name="router"
        )(router)

        for lane in Lane:

            def lane_agent(lane: Lane = lane) -> Any:
                async def execute(stream: Any) -> None:
                    # One actor per lane, whose batches run their calls concurrently: with
                    # several actors Faust can commit past a record another actor still runs
                    # (faust-streaming #606), which loses it on a crash.
                    async for batch in stream.take_events(
                        self.settings.lane_prefetch, within=self.settings.batch_wait_s
                    ):
                        with acked_only_if_done(batch, "lane (stopped during a rebalance)"):
                            events = await self._owned(batch)
                        if not events:
                            continue
                        self._in_hand += 1
                        self._idle.clear()
                        try:
                            # cancelled (stop past the drain) or outputs not written: left
                            # unacknowledged, read again (a claimed call is then found open: an
                            # OutcomeUnknownError dead letter)
                            with acked_only_if_done(events, f"lane {lane.value}"):
                                await self._catch_up(events)
                                items = []
                                for event in events:
                                    got = await self._decoded(event)
                                    if got is not None:
                                        request, source = got
                                        items.append(
                                            LaneItem(event.key, event.value, source, request, lane)
                                        )
                                await writer.execute(self.executor, self.dispatcher, items)
                        finally:
                            self._in_hand -= 1
                            if not self._in_hand:
                                self._idle.set()

                return execute

            topic = app.topic(
                cat.name(f"calls.lane.{lane.value}"), value_type=bytes, key_type=bytes
            )
            app.agent(topic, name=f"lane-{lane.value}")(lane_agent())

        for tier in range(1, self.settings.retry.tiers + 1):

            async def retry_tier(stream: Any) -> None:
                async for event in stream.events():
                    with acked_only_if_done([event], "retry tier"):
                        await self._retried(event)

            topic = app.topic(cat.name(f"calls.retry.{tier}"), value_type=bytes, key_type=bytes)
            app.agent(topic, name=f"retry-{tier}", isolated_partitions=True)(retry_tier)


def _forget_acks(consumer: Any, held: Any) -> None:
    """Drop faust-streaming 0.15's ack bookkeeping of partitions not held (it forgets only the
    partitions it revokes): acks that landed after a revoke would otherwise, once the partition
    came back, be committed as if they followed what its other owner committed."""
    for name in ("_acked", "_acked_index", "_gap", "_committed_offset"):
        table = getattr(consumer, name, None)
        if isinstance(table, dict):
            for tp in [tp for tp in table if tp not in held]:
                del table[tp]


def _tier(source: Source) -> int:
    """The tier of a ``calls.retry.<n>`` source."""
    return int(source.topic.rsplit(".", 1)[1])
