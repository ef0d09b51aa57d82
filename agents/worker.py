"""The call worker: router, executor lanes and retry tiers, plus health checks.

Lifecycle (``start`` / ``stop`` / ``describe``) matches ``infra.stack.Service``, so ``backbone up``
and ``backbone worker`` run it the same way. On start it first restores what must survive a
restart (breaker states from ``integration.circuits``; the call ledger from its store and what
``calls.claims`` and ``calls.results`` received after its checkpoint), then starts the pipeline on its runtime: aiokafka stages (default) or Faust
agents (``runtime = "faust"``).
Side events (breaker changes, health checks, plugin lifecycle) go through the worker's own
publisher, which also writes the ledger's claims.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka import ConsumerRecord

from agents._kafka_calls import KafkaCalls
from agents._ledger_store import LedgerStore
from agents._writer import CallWriter, Pipeline
from agents.dispatch import LaneDispatcher
from agents.executor import HEALTH, CallExecutor
from agents.ledger import CallLedger, LedgerFollower
from agents.outputs import Output
from agents.settings import WorkerSettings
from connectors.base import Connector
from connectors.registry import build
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.events.calls import CallStarted
from streams.events.health import CircuitStateChanged, HealthChecked, HealthStatus
from streams.follow import TopicFollower
from streams.headers import CLAIM
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.supervise import Supervisor
from streams.topics import Catalogue

if TYPE_CHECKING:
    from agents._faust_calls import FaustCalls

log = logging.getLogger(__name__)


#: The consumer stages of the aiokafka runtime; each is its own group ``{group_id}.{stage}``.
KAFKA_STAGES = ("router", "lanes", "retry")


def consumer_groups(settings: WorkerSettings) -> str:
    """The consumer groups the worker really joins, as a log line names them."""
    if settings.runtime == "aiokafka":
        return "groups " + ", ".join(f"{settings.group_id}.{s}" for s in KAFKA_STAGES)
    return f"group {settings.group_id} (Faust app)"


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
        self.ledger = CallLedger(window_s=settings.ledger_window_s)
        self._ledger_tmp: Path | None = None  # the store's folder when none is configured
        self._side: asyncio.Queue[Output] = asyncio.Queue()
        self.publisher = Publisher(kafka, codec, catalogue)
        self.writer = CallWriter(self.publisher, catalogue)
        self.executor = CallExecutor(
            settings,
            self.connectors,
            self.ledger,
            on_circuit=self._side.put_nowait,
            journal=self._claim,
            worker=kafka.client_id,
            topics=catalogue,
        )
        self.dispatcher = LaneDispatcher(settings.lane_weights, settings.max_in_flight)
        self._follower = LedgerFollower(
            kafka,
            codec,
            catalogue.name("calls.claims"),
            catalogue.name("calls.results"),
            self.ledger,
        )
        parts = Pipeline(
            kafka, codec, catalogue, settings, self.executor, self.dispatcher, self.writer
        )
        self.runtime: KafkaCalls | FaustCalls
        if settings.runtime == "faust":
            from agents._faust_calls import FaustCalls  # Faust only when it is the runtime

            self.runtime = FaustCalls(parts, self._follower, datadir=datadir)
        else:
            self.runtime = KafkaCalls(parts, self._follower)
        #: the health and side-event loops: restarted on transient errors, reported otherwise
        self.supervisor = Supervisor(self.name)

    def describe(self) -> str:
        services = ", ".join(f"{c.service} ({c.kind})" for c in self.connectors.values()) or "none"
        return (
            f"call agents ({self.settings.runtime} runtime), {consumer_groups(self.settings)}; "
            f"services: {services}"
        )

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        for connector in self.connectors.values():
            bind = getattr(connector, "bind_events", None)
            if bind is not None:  # plugin connectors report their lifecycle (plugin.* events)
                bind(self._plugin_event)
            await connector.start()
        await self._restore_circuits()
        await self.publisher.start()
        self.ledger.store = self._open_ledger_store()
        await self._follower.start()
        await self.runtime.start()
        self.supervisor.start("health-checks", self._health_loop)
        self.supervisor.start("side-events", self._side_loop)

    def problems(self) -> dict[str, str]:
        """Background loops failing now (empty when all run): for readiness and logs."""
        return {**self.supervisor.problems(), **self.runtime.problems()}

    async def stop(self) -> None:
        await self.supervisor.close()  # never re-raises a loop's old error: teardown goes on
        await self.runtime.stop()
        for connector in self.connectors.values():
            unloading = getattr(connector, "unloading", None)
            if unloading is not None:  # said while the publisher still runs
                self._plugin_event(unloading("worker stopping"))
        await self._drain_side_events()
        await self.publisher.stop()
        await self._follower.stop()  # checkpoints the ledger
        self._close_ledger_store()
        for connector in self.connectors.values():
            await connector.stop()

    # --- the ledger's store -----------------------------------------------------------------------
    def _open_ledger_store(self) -> LedgerStore:
        folder = self.settings.ledger_dir
        if folder is None:
            folder = self._ledger_tmp = Path(tempfile.mkdtemp(prefix="backbone-ledger-"))
        name = self.settings.group_id
        if not name.startswith(self.catalogue.prefix):  # one store per topic prefix and group
            name = f"{self.catalogue.prefix}{name}"
        return LedgerStore.open_in(folder, name)

    def _close_ledger_store(self) -> None:
        self.ledger.store.close()
        self.ledger.store = LedgerStore()  # in memory until the next start
        if self._ledger_tmp is not None:
            shutil.rmtree(self._ledger_tmp, ignore_errors=True)
            self._ledger_tmp = None

    async def _claim(self, claim: CallStarted) -> None:
        # claims handed over in one loop turn share a produce batch; the claim id goes in a
        # header too, so the ledger skips its own claims without decoding them
        header = {CLAIM: claim.claim_id.encode()}
        sent = await self.publisher.send(claim, topic="calls.claims", headers=header)
        await self.publisher.acknowledged([sent])

    # --- restart state --------------------------------------------------------------------------
    async def _restore_circuits(self) -> None:
        latest: dict[str, CircuitStateChanged] = {}

        async def keep(record: ConsumerRecord[bytes, bytes]) -> None:
            if record.value is None:
                return
            try:
                event = await self.codec.decode(record.value)
            except BackboneError as exc:
                log.warning("skipped undecodable circuit record: %s", exc)
                return
            if isinstance(event, CircuitStateChanged):
                latest[event.service] = event

        reader = TopicFollower(self.kafka, self.catalogue.name("integration.circuits"), keep)
        await reader.start()  # returns once everything written so far was read
        await reader.stop()
        for event in latest.values():
            self.executor.restore_circuit(event)

    def _plugin_event(self, event: Event) -> None:
        self._side.put_nowait(Output("plugins.lifecycle", event))

    async def _emit(self, output: Output) -> None:
        await self.publisher.publish(
            output.event, topic=output.topic, key=output.key, headers=output.headers
        )

    async def _drain_side_events(self) -> None:
        while not self._side.empty():
            try:
                await self._emit(self._side.get_nowait())
            except BackboneError as exc:
                log.warning("side event not written while stopping: %s", exc)

    async def _side_loop(self) -> None:
        while True:
            output = await self._side.get()
            try:
                await self._emit(output)
            except BackboneError as exc:  # e.g. Kafka away for longer than the producer waits
                log.warning("side event %s not written: %s", output.event.event_type, exc)

    # --- health ---------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            await self.check_health()  # a Kafka outage raises here: the supervisor backs off
            self.supervisor.mark_ok("health-checks")
            await asyncio.sleep(self.settings.health_interval_s)

    async def check_health(self) -> None:
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
            await self._emit(Output(HEALTH, event))
