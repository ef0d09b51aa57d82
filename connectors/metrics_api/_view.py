"""The gateway's view of ``monitoring.metrics``: the last day of windows, and running totals.

It reads the topic from one day (plus an hour) back, then follows it; windows are kept by event
id (a re-emitted window is recognised), older ones are evicted. Totals since the view started
only grow, which is what Prometheus counters need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.admin import partitions
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import BackboneError, KafkaUnavailableError
from streams.events.monitoring import MetricsWindow
from streams.long_poll import LONG_POLL_MS, long_poll
from streams.rollup import IntegrationFigures, rollup
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

KEEP = timedelta(hours=25)
_EPOCH = datetime.fromtimestamp(0, UTC)


class MetricsView:
    """Windows of the last day per event id, plus cumulative per-service totals."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, topic: str) -> None:
        self._kafka = kafka
        self._codec = codec
        self._topic = topic
        self._windows: dict[UUID, MetricsWindow] = {}
        self.totals: dict[str, IntegrationFigures] = {}
        self.latest_window_end: datetime | None = None
        self.last_update: float | None = None
        self.undecodable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    # --- reading ------------------------------------------------------------------------------

    async def start(self) -> None:
        found = await partitions(self._kafka, [self._topic])
        tps = [TopicPartition(self._topic, p) for p in found[self._topic]]
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-metrics-view",
            enable_auto_commit=False,
            isolation_level="read_committed",
            consumer_timeout_ms=LONG_POLL_MS,  # seeks and finished fetches wake it anyway
        )
        try:
            await consumer.start()
            consumer.assign(tps)
            since = int((time.time() - KEEP.total_seconds()) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                at = starts.get(tp)
                consumer.seek(tp, at.offset if at is not None else ends[tp])
            long_poll(consumer)  # after the offset lookups: they would queue behind it
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailableError(f"cannot read {self._topic}: {exc}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(), name="metrics-view")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=LONG_POLL_MS)
            except KafkaError as exc:
                log.warning("reading %s: %s", self._topic, exc)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    try:
                        data = record.value or b""
                        event = self._codec.decode_cached(data) or await self._codec.decode(data)
                    except BackboneError as exc:  # counted; the projector wrote it, so it is rare
                        self.undecodable += 1
                        log.warning("undecodable metrics record %s: %s", record.offset, exc)
                        continue
                    if isinstance(event, MetricsWindow):
                        self.add(event)
            self._evict()

    # --- the data -------------------------------------------------------------------------------

    def add(self, window: MetricsWindow) -> None:
        if window.event_id in self._windows:
            return
        self._windows[window.event_id] = window
        totals = self.totals.get(window.service)
        if totals is None:
            totals = self.totals[window.service] = IntegrationFigures(
                window.service, window.window_start, window.window_end
            )
        totals.start = min(totals.start, window.window_start)
        totals.end = max(totals.end, window.window_end)
        totals.add(window)
        if self.latest_window_end is None or window.window_end > self.latest_window_end:
            self.latest_window_end = window.window_end
        self.last_update = time.time()

    def _evict(self) -> None:
        cutoff = datetime.now(UTC) - KEEP
        for event_id in [i for i, w in self._windows.items() if w.window_end < cutoff]:
            del self._windows[event_id]

    def windows(self, start: datetime, end: datetime) -> list[MetricsWindow]:
        return [
            w for w in self._windows.values() if w.window_start >= start and w.window_end <= end
        ]

    def figures(self, span: timedelta) -> tuple[datetime, datetime, dict[str, IntegrationFigures]]:
        """Per service over the ``span`` ending at the latest closed window (or now)."""
        end = self.latest_window_end or datetime.now(UTC).replace(second=0, microsecond=0)
        start = end - span
        return start, end, rollup(self.windows(start, end), start, end)

    def freshness(self) -> dict[str, object]:
        latest = self.latest_window_end
        return {
            "latest_window_end": None if latest is None else latest.isoformat(),
            "age_seconds": (
                None if latest is None else (datetime.now(UTC) - latest).total_seconds()
            ),
            "windows_held": len(self._windows),
        }
