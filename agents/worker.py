"""The call worker: router, executor lanes and retry tiers on one Faust app, plus health checks.

Lifecycle (``start`` / ``stop`` / ``describe``) matches ``infra.stack.Service``, so ``backbone up``
and ``backbone worker`` run it the same way. On start it first restores what must survive a
restart (breaker states from ``integration.circuits``, succeeded idempotency keys from
``calls.results``), then starts the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import _headers as hd
from agents.app import FaustEmitter, create_app, decode, source_of
from agents.completed import CompletedCalls, ResultsTail
from agents.dispatch import LaneDispatcher
from agents.errors import AgentError
from agents.executor import HEALTH, CallExecutor
from agents.lanes import Lane
from agents.outputs import Output, Source
from agents.router import lane_topic, route
from agents.settings import WorkerSettings
from connectors.base import Connector
from connectors.registry import build
from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.events.calls import CallRequested
from streams.events.health import CircuitStateChanged, HealthChecked, HealthStatus
from streams.settings import KafkaSettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)


class CallWorker:
    name = "worker"

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: WorkerSettings,
        *,
        connectors: Mapping[str, Connector] | None = None,
        datadir: Path | None = None,
    ) -> None:
        self.kafka = kafka
        self.codec = codec
        self.catalogue = catalogue
        self.settings = settings
        self.connectors = (
            dict(connectors)
            if connectors is not None
            else {s.name: build(s) for s in settings.services}
        )
        self.completed = CompletedCalls()
        self._circuits: asyncio.Queue[Output] = asyncio.Queue()
        self.executor = CallExecutor(
            settings, self.connectors, self.completed, on_circuit=self._circuits.put_nowait
        )
        self.dispatcher = LaneDispatcher(settings.lane_weights, settings.max_in_flight)
        self._tail = ResultsTail(kafka, codec, catalogue.name("calls.results"), self.completed)
        self._datadir = datadir
        self.app: faust.App | None = None
        self._emitter: FaustEmitter | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._circuit_task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        services = ", ".join(f"{c.service} ({c.kind})" for c in self.connectors.values()) or "none"
        return f"call agents, group {self.settings.group_id}; services: {services}"

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        for connector in self.connectors.values():
            bind = getattr(connector, "bind_events", None)
            if bind is not None:  # plugin connectors report their lifecycle (plugin.* events)
                bind(self._plugin_event)
            await connector.start()
        await self._restore_circuits()
        await self._tail.start()
        app = create_app(self.kafka, self.settings, datadir=self._datadir)
        self._emitter = FaustEmitter(
            app,
            self.codec,
            self.catalogue,
            direct=self.settings.processing_guarantee == "at_least_once",
        )
        self._define_agents(app)
        self.app = app
        await app.start()
        self._health_task = asyncio.create_task(self._health_loop(), name="health-checks")
        self._circuit_task = asyncio.create_task(self._circuit_loop(), name="circuit-changes")

    async def stop(self) -> None:
        for task in (self._health_task, self._circuit_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for connector in self.connectors.values():
            unloading = getattr(connector, "unloading", None)
            if unloading is not None:  # said while the producer still runs
                self._plugin_event(unloading("worker stopping"))
        await self._drain_side_events()
        if self.app is not None:
            await self.app.stop()
            self.app = None
        await self._tail.stop()
        for connector in self.connectors.values():
            await connector.stop()

    # --- restart state --------------------------------------------------------------------------
    async def _restore_circuits(self) -> None:
        topic = self.catalogue.name("integration.circuits")
        latest: dict[str, CircuitStateChanged] = {}
        for value in await _read_to_end(self.kafka, topic):
            try:
                event = await self.codec.decode(value)
            except BackboneError as exc:
                log.warning("skipped undecodable circuit record: %s", exc)
                continue
            if isinstance(event, CircuitStateChanged):
                latest[event.service] = event
        for event in latest.values():
            self.executor.restore_circuit(event)

    # --- agents ---------------------------------------------------------------------------------
    def _define_agents(self, app: faust.App) -> None:
        cat, codec = self.catalogue, self.codec
        emitter = self._emitter
        assert emitter is not None

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
                        if output.event is request:
                            deliveries.append(await forward(event, source, output))
                        else:
                            deliveries.append(await emitter.send(output))
                await emitter.wait(deliveries)

        async def forward(event: Any, source: Source, output: Output) -> Awaitable[Any] | None:
            """The request's own bytes to its lane, with the headers an encode would have set."""
            value: bytes = event.value
            headers = {
                **output.headers,
                h.EVENT_TYPE: CallRequested.event_type.encode(),
                h.SCHEMA_ID: str(int.from_bytes(value[1:5], "big")).encode(),
            }
            if (trace := source.headers.get(h.TRACEPARENT)) is not None:
                headers[h.TRACEPARENT] = trace
            key = output.key if output.key is not None else output.event.key()
            return await emitter.send_raw(emitter.real(output.topic), key, value, headers)

        app.agent(
            app.topic(cat.name("calls.requests"), value_type=bytes, key_type=bytes), name="router"
        )(router)

        for lane in Lane:

            def lane_agent(lane: Lane = lane) -> Any:
                async def one(event: Any) -> list[Output]:
                    got = await decoded(event)
                    if got is None:
                        return []
                    request, source = got
                    try:
                        return await self.dispatcher.run(
                            lane, functools.partial(self.executor.handle, request, source)
                        )
                    except Exception as exc:  # a bug must not silently stop the lane agent
                        log.exception("executor failed on %s", request.call_id)
                        await emitter.dead_letter_raw(event, source, AgentError(repr(exc)))
                        return []

                async def execute(stream: Any) -> None:
                    # Small batches run concurrently; several actors per lane, so a slow call
                    # holds back only its own batch. Offsets are acked after the batch's outputs
                    # are handed to the producer (at-least-once).
                    async for events in stream.take_events(
                        self.settings.lane_batch, within=self.settings.batch_wait_s
                    ):
                        batch = await asyncio.gather(*(one(e) for e in events))
                        await emitter.wait(
                            [await emitter.send(o) for outputs in batch for o in outputs]
                        )

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
                    carried = {
                        k: v
                        for k, v in source.headers.items()
                        if k.startswith("backbone-dlt-") or k == hd.REDRIVEN_FROM
                    }
                    await emitter.emit(
                        Output(
                            lane_topic(request),
                            request,
                            key=request.service.encode(),
                            headers=carried,
                        )
                    )

            topic = app.topic(cat.name(f"calls.retry.{tier}"), value_type=bytes, key_type=bytes)
            app.agent(topic, name=f"retry-{tier}", isolated_partitions=True)(retry_tier)

    def _plugin_event(self, event: Event) -> None:
        self._circuits.put_nowait(Output("plugins.lifecycle", event))

    async def _drain_side_events(self) -> None:
        if self._emitter is None or self.app is None:
            return
        while not self._circuits.empty():
            await self._emitter.emit(self._circuits.get_nowait())
        await self.app.producer.flush()

    async def _circuit_loop(self) -> None:
        assert self._emitter is not None
        while True:
            output = await self._circuits.get()
            await self._emitter.emit(output)

    # --- health ---------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(self.settings.health_interval_s)

    async def check_health(self) -> None:
        emitter = self._emitter
        assert emitter is not None
        for connector in self.connectors.values():
            try:
                health = await connector.health()
            except BackboneError as exc:
                status, latency, detail = HealthStatus.UNHEALTHY, None, f"{exc.code}"
            else:
                status = HealthStatus.HEALTHY if health.healthy else HealthStatus.UNHEALTHY
                latency, detail = health.latency_s * 1000, health.detail
            event = HealthChecked(
                service=connector.service, status=status, latency_ms=latency, detail=detail
            )
            await emitter.emit(Output(HEALTH, event))


async def _read_to_end(kafka: KafkaSettings, topic: str) -> list[bytes]:
    """Every value of ``topic`` up to its current end (used for small compacted topics)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()
