"""The aiokafka runtime of the call pipeline (the default): router, lanes and retry tiers as
:class:`~agents.runtime.Stage` consumers, each in its own group (``{group_id}.router``,
``{group_id}.lanes``, ``{group_id}.retry``).

- **router**: picks each request's lane from its routing headers (service and priority; a
  record without them is decoded once), forwards its original bytes, waits for every
  acknowledgement of the batch, then lets the stage commit.
- **lanes**: every record runs through the executor under the lane dispatcher (high first, low
  never starved); an attempt is settled in the call ledger once its outputs are acknowledged.
  Before newly assigned lane partitions are processed, the ledger catches up with
  ``calls.claims`` and ``calls.results``, so the previous owner's claims are known.
- **retry tiers**: a record is forwarded back to its lane when due (the stage parks a tier
  partition whose head is not due), routed by its headers like the router's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from agents import _headers as hd
from agents._writer import LaneItem, Pipeline
from agents.errors import RetryDueTooLateError
from agents.lanes import Lane
from agents.ledger import LedgerFollower
from agents.outputs import Forward, Source
from agents.retry import due_too_late
from agents.router import Routing, back_to_lane, route, routing_from_headers
from agents.runtime import Record, Stage
from streams.events.calls import CallRequested
from streams.long_poll import LONG_POLL_MS

log = logging.getLogger(__name__)

Pending = list[asyncio.Future[Any]]
R = TypeVar("R")
#: Fetch wait of the router and lanes while a batch is in hand. The broker answers a fetch as
#: soon as one record is there (``fetch_min_bytes`` = 1), so this adds no latency; it only paces
#: the polling of partitions with nothing to read. Idle (nothing in hand), a stage long-polls
#: (``streams.long_poll.LONG_POLL_MS``): at 500 ms the three idle stages' empty fetches were
#: most of an idle worker's CPU.
FETCH_WAIT_MS = 500
#: The retry stage's while a batch is in hand or a tier partition is parked: a parked partition
#: resumes a whole second before its head is due (RETRY_EARLY_S), is fetched once the fetch in
#: flight returns, and each record still goes when it is due. With nothing parked it long-polls
#: like the others: no due time to wake for.
RETRY_FETCH_WAIT_MS = 500
RETRY_EARLY_S = 1.0


class KafkaCalls:
    def __init__(self, parts: Pipeline, ledger: LedgerFollower) -> None:
        kafka, catalogue, settings = parts.kafka, parts.catalogue, parts.settings
        self.codec, self.catalogue, self.settings = parts.codec, catalogue, settings
        self.executor, self.dispatcher, self.writer = parts.executor, parts.dispatcher, parts.writer
        self.ledger = ledger
        self._logical: dict[str, str] = {}
        group = settings.group_id

        def stage(
            name: str,
            topics: list[str],
            handle: Callable[[list[Record]], Awaitable[None]],
            **kw: Any,
        ) -> Stage:
            return Stage(
                name,
                kafka,
                f"{group}.{name}",
                [catalogue.name(t) for t in topics],
                handle,
                commit_interval_s=settings.commit_interval_s,
                session_timeout_s=settings.session_timeout_s,
                rebalance_timeout_s=settings.rebalance_timeout_s,
                drain_timeout_s=settings.drain_timeout_s,
                idle_fetch_wait_ms=LONG_POLL_MS,
                **kw,
            )

        self.stages = [
            stage(
                "router",
                ["calls.requests"],
                self._route,
                prefetch=settings.router_prefetch,
                max_batch=settings.router_batch,
                fetch_wait_ms=FETCH_WAIT_MS,
            ),
            stage(
                "lanes",
                [f"calls.lane.{lane.value}" for lane in Lane],
                self._execute,
                prefetch=settings.lane_prefetch,
                max_batch=settings.lane_batch,
                on_assigned=ledger.caught_up,
                fetch_wait_ms=FETCH_WAIT_MS,
            ),
            stage(
                "retry",
                [f"calls.retry.{n}" for n in range(1, settings.retry.tiers + 1)],
                self._retry,
                prefetch=settings.retry_prefetch,
                max_batch=settings.retry_batch,
                due=self._due,
                fetch_wait_ms=RETRY_FETCH_WAIT_MS,
                early_s=RETRY_EARLY_S,
            ),
        ]

    async def start(self) -> None:
        for stage in self.stages:
            await stage.start()

    async def stop(self) -> None:
        for stage in self.stages:
            await stage.stop()

    def problems(self) -> dict[str, str]:
        """Stages whose fetch loop died (each also reported, ``FATAL``, when it died)."""
        return {f"stage-{s.name}": s.failure for s in self.stages if s.failure is not None}

    # --- helpers --------------------------------------------------------------------------------
    def _source(self, record: Record) -> Source:
        logical = self._logical.get(record.topic)
        if logical is None:
            logical = self._logical[record.topic] = self.catalogue.logical(record.topic)
        return Source(
            logical,
            record.partition,
            record.offset,
            record.timestamp,
            {k: bytes(v) for k, v in record.headers},
        )

    async def _request(
        self, record: Record, source: Source, pending: Pending
    ) -> CallRequested | None:
        """The record's request; an unusable record is dead-lettered (its ack joins pending)."""
        got = await self.writer.request_of(self.codec, record.key, record.value, source)
        if isinstance(got, CallRequested):
            return got
        pending.append(got)
        return None

    # --- stages ---------------------------------------------------------------------------------
    async def _route(self, records: list[Record]) -> None:
        now = datetime.now(UTC)
        allow = self.settings.allow_replayed_calls
        await self._forward_each(
            records, lambda request, source: route(request, source, now=now, allow_replayed=allow)
        )

    def _due(self, record: Record) -> float | None:
        """When a tier record is due; None (now) for one without a due time, or a poison one."""
        due = _due_at(record)
        if due is None or self._too_late(record, due) is not None:
            return None
        return due.timestamp()

    def _too_late(self, record: Record, due: datetime | None) -> str | None:
        tier = int(record.topic.rsplit(".", 1)[1])
        return due_too_late(due, tier, self.settings.retry, datetime.now(UTC))

    async def _retry(self, records: list[Record]) -> None:
        verdicts = [(r, self._too_late(r, _due_at(r))) for r in records]
        pending: Pending = []
        for record, why in verdicts:  # poison would hold its partition for good: end the call
            if why is None:
                continue
            source = self._source(record)
            request = await self._request(record, source, pending)
            if request is not None:
                log.warning("dead-lettering retry of %s: %s", request.call_id, why)
                error = RetryDueTooLateError(why)
                pending += await self.writer.refuse(self.executor, request, source, error)
        await self.writer.acknowledged(pending)
        # fetched up to RETRY_EARLY_S early: each record goes back to its lane when it is due
        await in_due_order([r for r, why in verdicts if why is None], self._due, self._back)

    async def _back(self, records: list[Record]) -> None:
        await self._forward_each(records, back_to_lane)

    async def _forward_each(
        self, records: list[Record], outputs: Callable[[Routing, Source], list[Forward]]
    ) -> None:
        """Each record's request bytes to where ``outputs`` sends it; then wait for every ack.
        A record is routed by its headers when it has them, else decoded."""
        pending: Pending = []
        for record in records:
            source = self._source(record)
            routing = routing_from_headers(source.headers, record.value)
            if routing is None:
                request = await self._request(record, source, pending)
                if request is None:
                    continue
                routing = Routing.of(request)
            for output in outputs(routing, source):
                pending.append(await self.writer.forward(record.value or b"", source, output))
        await self.writer.acknowledged(pending)

    async def _execute(self, records: list[Record]) -> None:
        pending: Pending = []
        items: list[LaneItem] = []
        for record in records:
            source = self._source(record)
            request = await self._request(record, source, pending)
            if request is not None:
                lane = Lane(source.topic.rsplit(".", 1)[1])
                items.append(LaneItem(record.key, record.value, source, request, lane))
        await self.writer.acknowledged(pending)
        await self.writer.execute(self.executor, self.dispatcher, items)


async def in_due_order(
    records: list[R],
    due: Callable[[R], float | None],
    handle: Callable[[list[R]], Awaitable[None]],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Hand records to ``handle`` as they come due (``due``: epoch seconds, None for now), in
    their order: a record is never handed over before one ahead of it, and the records due by
    the time the first of a run is are handed over together."""
    todo = records
    while todo:
        if (wait := (due(todo[0]) or 0.0) - clock()) > 0:
            await sleep(wait)
        now, ready = clock(), 1
        while ready < len(todo) and (due(todo[ready]) or 0.0) <= now:
            ready += 1
        await handle(todo[:ready])
        todo = todo[ready:]


def _due_at(record: Record) -> datetime | None:
    for name, value in record.headers:
        if name == hd.DUE_AT:
            return hd.parse_time(bytes(value).decode("utf-8", "replace"))
    return None
