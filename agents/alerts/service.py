"""The alert evaluator ``backbone up`` runs: metrics windows and circuit changes in, alerts out.

On start it folds ``monitoring.alerts`` (what was already raised and resolved), restores the alerts
firing at ``S = now - lookback_s``, reads the windows that ended up to the longest ``for_s`` before
``S`` only to rebuild pending breaches, and evaluates the windows after ``S`` again. Events are
deterministic (:mod:`agents.alerts._book`), so whatever that re-evaluation raises or resolves is
already in the log and is not written twice: a restart or a replay changes nothing. Windows that
ended before ``S`` and were never evaluated (the evaluator was down longer than ``lookback_s``)
are not alerted on afterwards. Run one
evaluator per cluster (a second would write the same events again; readers dedupe on ``event_id``).

Its loops (one per followed topic, the lag sampler) run under a :class:`Supervisor`: a transient
error restarts a loop after a capped, jittered back-off (a subscriber resumes where it stopped)
and shows in :meth:`AlertService.problems`; any other error is reported once as died for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agents.alerts._book import AlertBook, AlertEvent
from agents.alerts._lag import consumer_lag
from agents.alerts._log import AlertLog
from agents.alerts.rules import AlertKind, AlertSettings
from streams.codec import Codec
from streams.consumer import Subscriber
from streams.errors import BackboneError
from streams.events.health import CircuitStateChanged
from streams.events.monitoring import MetricsWindow
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.supervise import Supervisor, retrying
from streams.topics import Catalogue

log = logging.getLogger(__name__)

ALERTS = "monitoring.alerts"
METRICS = "monitoring.metrics"
CIRCUITS = "integration.circuits"
#: windows are written after they close (and a grace period): read this much earlier as well
_WARM_UP_MARGIN_S = 900.0


async def read_alert_log(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> AlertLog:
    """Everything ``monitoring.alerts`` holds now, folded."""
    alerts = AlertLog()
    subscriber = Subscriber(
        kafka, codec, catalogue, [ALERTS], None, stop_at_end=True, dead_letters=False
    )
    async with subscriber:
        async for received in subscriber:
            alerts.apply(received.event)
    return alerts


class AlertService:
    name = "alerts"

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        settings: AlertSettings,
        *,
        owns_registry_client: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._settings = settings
        self._owns_registry_client = owns_registry_client
        self._now = now
        self.book = AlertBook(settings.rules)  # replaced on start, with its start time
        self.log = AlertLog()
        self.publisher = Publisher(kafka, codec, catalogue)
        self._subscribers: list[Subscriber] = []
        self.supervisor = Supervisor(self.name)
        #: records applied, per logical topic (tests wait on it)
        self.applied: dict[str, int] = {METRICS: 0, CIRCUITS: 0}
        self.written = 0

    @property
    def failure(self) -> BaseException | None:
        """The error a loop died of for good, if one did."""
        return None if self.supervisor.failure is None else self.supervisor.failure[1]

    def problems(self) -> dict[str, str]:
        """Loops failing now, with their last error (readiness; empty: all healthy)."""
        return self.supervisor.problems()

    async def start(self) -> None:
        await self.publisher.start()
        self.log = await read_alert_log(self._kafka, self._codec, self._catalogue)
        start = self._now() - timedelta(seconds=self._settings.lookback_s)
        self.book = AlertBook(
            self._settings.rules, live_from=start, settle=timedelta(seconds=self._settings.settle_s)
        )
        for record in self.log.firing_at(start):
            self.book.seed(record.raised)
        longest = max((r.for_s for r in self._settings.rules), default=0.0)
        since_ms = int((start.timestamp() - longest - _WARM_UP_MARGIN_S) * 1000)
        await self._follow(CIRCUITS, None)  # compacted: the latest state per service is needed
        await self._follow(METRICS, since_ms)
        if any(r.kind is AlertKind.CONSUMER_LAG for r in self._settings.rules):
            self.supervisor.start("lag", self._measure_lag)

    async def _follow(self, topic: str, since_ms: int | None) -> None:
        subscriber = Subscriber(
            self._kafka,
            self._codec,
            self._catalogue,
            [topic],
            None,
            start_at_ms=since_ms,
            dead_letters=False,  # group-less reader: the topic's own consumers dead-letter
        )
        await subscriber.start()
        self._subscribers.append(subscriber)

        async def run() -> None:
            async for received in subscriber:  # again after a restart: resumes where it stopped
                event = received.event
                if isinstance(event, MetricsWindow):
                    await self._write(self.book.apply_window(event))
                elif isinstance(event, CircuitStateChanged):
                    await self._write(self.book.apply_circuit(event))
                self.applied[topic] += 1
                self.supervisor.mark_ok(topic)

        self.supervisor.start(topic, run)

    async def _write(self, events: list[AlertEvent]) -> None:
        for event in events:
            if event.event_id in self.log.event_ids:
                continue  # already in the log: a restart or replay re-derived it

            async def publish(event: AlertEvent = event) -> None:
                await self.publisher.publish(event, topic=ALERTS)

            # not skipped: the window that derived it is already consumed
            await retrying(publish, f"writing {event.event_type}")
            self.log.apply(event)
            self.written += 1

    async def _measure_lag(self) -> None:
        rules = [r for r in self._settings.rules if r.kind is AlertKind.CONSUMER_LAG]
        every = any(r.service is None for r in rules)
        groups = None if every else sorted({r.service for r in rules if r.service is not None})
        while True:
            started = time.monotonic()
            try:
                lag = await consumer_lag(self._kafka, groups)
            except BackboneError as exc:
                if exc.retriable:
                    raise  # the supervisor backs off, restarts it, and readiness shows it
                log.warning("measuring consumer lag: %s", exc)
            else:
                at = self._now()
                for group, behind in sorted(lag.items()):
                    await self._write(self.book.apply_lag(group, at, float(behind)))
                self.supervisor.mark_ok("lag")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._settings.lag_interval_s - elapsed))

    async def stop(self) -> None:
        await self.supervisor.close()  # cancels every loop; never re-raises their errors
        for subscriber in self._subscribers:
            await subscriber.stop()
        self._subscribers.clear()
        await self.publisher.stop()
        if self._owns_registry_client:
            await self._codec.registry.close()

    def describe(self) -> str:
        firing = len(self.log.firing())
        return f"{len(self.book.rules)} rules, {firing} firing"
