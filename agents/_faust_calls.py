"""The Faust runtime of the call pipeline (``runtime = "faust"``): router, lanes, retry tiers.

Kept for Faust's exactly-once processing (``processing_guarantee = "exactly_once"``: outputs and
input offsets commit in one transaction). Caveats: Faust acks a ``take_events`` batch in a
``finally``, so under at-least-once a batch whose outputs failed to write can still be committed
(the ledger then sees its claims open and dead-letters those calls as ``OutcomeUnknownError``
rather than losing or repeating them); throughput is bound by Faust's per-event overhead. The
aiokafka runtime (:mod:`agents._kafka_calls`) is the default.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from agents import _headers as hd
from agents.app import FaustEmitter, create_app, decode, source_of
from agents.dispatch import LaneDispatcher
from agents.errors import AgentError
from agents.executor import CallExecutor
from agents.lanes import Lane
from agents.outputs import Output, forward_headers
from agents.router import lane_topic, retry_carried, route
from agents.settings import WorkerSettings
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.calls import CallRequested
from streams.settings import KafkaSettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)


class FaustCalls:
    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: WorkerSettings,
        executor: CallExecutor,
        dispatcher: LaneDispatcher,
        *,
        datadir: Path | None = None,
    ) -> None:
        self.kafka, self.codec, self.catalogue, self.settings = kafka, codec, catalogue, settings
        self.executor = executor
        self.dispatcher = dispatcher
        self._datadir = datadir
        self.app: faust.App | None = None

    async def start(self) -> None:
        app = create_app(self.kafka, self.settings, datadir=self._datadir)
        emitter = FaustEmitter(
            app,
            self.codec,
            self.catalogue,
            direct=self.settings.processing_guarantee == "at_least_once",
        )
        self._define_agents(app, emitter)
        self.app = app
        await app.start()

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    def _define_agents(self, app: faust.App, emitter: FaustEmitter) -> None:
        cat, codec = self.catalogue, self.codec

        async def decoded(event: Any) -> tuple[CallRequested, Any] | None:
            source = source_of(event, cat)
            try:
                request = await decode(codec, event.value)
            except BackboneError as exc:
                await emitter.dead_letter_raw(event, source, exc)
                return None
            if not isinstance(request, CallRequested):
                await emitter.dead_letter_raw(
                    event,
                    source,
                    BackboneError(f"unexpected {request.event_type} in {source.topic}"),
                )
                return None
            return request, source

        async def router(stream: Any) -> None:
            # Batches: routing does no slow I/O, so taking what is buffered cuts Faust's per-event
            # overhead. A request is decoded once (priority and service pick the lane) and its
            # original bytes are forwarded, not re-encoded. The whole batch is handed to the
            # producer, then every delivery awaited, before the batch's offsets are acked.
            async for events in stream.take_events(500, within=self.settings.batch_wait_s):
                now = datetime.now(UTC)
                deliveries: list[Awaitable[Any] | None] = []
                for event in events:
                    got = await decoded(event)
                    if got is None:
                        continue
                    request, source = got
                    for output in route(
                        request, source, now=now, allow_replayed=self.settings.allow_replayed_calls
                    ):
                        key = output.key if output.key is not None else output.event.key()
                        headers = forward_headers(event.value, output, source)
                        deliveries.append(
                            await emitter.send_raw(
                                emitter.real(output.topic), key, event.value, headers
                            )
                        )
                await emitter.wait(deliveries)

        app.agent(
            app.topic(cat.name("calls.requests"), value_type=bytes, key_type=bytes), name="router"
        )(router)

        for lane in Lane:

            def lane_agent(lane: Lane = lane) -> Any:
                async def one(event: Any) -> None:
                    got = await decoded(event)
                    if got is None:
                        return
                    request, source = got
                    try:
                        attempt = await self.dispatcher.run(
                            lane, functools.partial(self.executor.attempt, request, source)
                        )
                    except Exception as exc:  # a bug must not silently stop the lane agent
                        log.exception("executor failed on %s", request.call_id)
                        await emitter.dead_letter_raw(event, source, AgentError(repr(exc)))
                        return
                    # settled per record, not per batch: a second record of the same key in this
                    # batch waits for this one to settle
                    try:
                        for phase in (attempt.first, attempt.last):
                            await emitter.wait([await emitter.send(o) for o in phase])
                    except BaseException:
                        self.executor.settle(attempt, written=False)
                        raise
                    self.executor.settle(attempt)

                async def execute(stream: Any) -> None:
                    # Small batches run concurrently; several actors per lane, so a slow call
                    # holds back only its own batch.
                    async for events in stream.take_events(
                        self.settings.lane_batch, within=self.settings.batch_wait_s
                    ):
                        await asyncio.gather(*(one(e) for e in events))

                return execute

            topic = app.topic(
                cat.name(f"calls.lane.{lane.value}"), value_type=bytes, key_type=bytes
            )
            actors = max(1, self.settings.lane_prefetch // self.settings.lane_batch)
            app.agent(topic, name=f"lane-{lane.value}", concurrency=actors)(lane_agent())

        for tier in range(1, self.settings.retry.tiers + 1):

            async def retry_tier(stream: Any) -> None:
                async for event in stream.events():
                    source = source_of(event, cat)
                    due = hd.parse_time(hd.text(source.headers, hd.DUE_AT))
                    if due is not None:
                        wait = (due - datetime.now(UTC)).total_seconds()
                        if wait > 0:  # only this partition's actor waits (isolated partitions)
                            await asyncio.sleep(wait)
                    got = await decoded(event)
                    if got is None:
                        continue
                    request, _ = got
                    await emitter.emit(
                        Output(
                            lane_topic(request),
                            request,
                            key=request.service.encode(),
                            headers=retry_carried(source),
                        )
                    )

            topic = app.topic(cat.name(f"calls.retry.{tier}"), value_type=bytes, key_type=bytes)
            app.agent(topic, name=f"retry-{tier}", isolated_partitions=True)(retry_tier)
