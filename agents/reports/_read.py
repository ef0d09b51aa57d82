"""What a report is made of, read from the log: metrics windows, dead letters, attempt outcomes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connectors.errors import CircuitOpenError
from streams.codec import Codec
from streams.consumer import Subscriber
from streams.events.calls import CallDeadLettered, CallFailed, CallSucceeded
from streams.events.monitoring import MetricsWindow
from streams.settings import KafkaSettings
from streams.topics import Catalogue

#: windows are written after they close (plus a grace period): read the log this much earlier
_MARGIN = timedelta(hours=1)


@dataclass
class ReportInputs:
    """Everything of ``[since, until)`` a report needs (``since`` is the previous period's start)."""

    windows: list[MetricsWindow] = field(default_factory=list)
    dead_letters: list[CallDeadLettered] = field(default_factory=list)
    #: service -> Counter of (outcome, attempt) for attempts that ended in the current period
    attempts: dict[str, Counter[tuple[str, int]]] = field(default_factory=dict)


async def _each(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, topic: str, since: datetime
) -> Subscriber:
    start_ms = int((since - _MARGIN).timestamp() * 1000)
    return Subscriber(
        kafka,
        codec,
        catalogue,
        [topic],
        None,
        start_at_ms=start_ms,
        stop_at_end=True,
        dead_letters=False,  # a read-only tool
    )


async def read_inputs(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    previous_since: datetime,
    since: datetime,
    until: datetime,
) -> ReportInputs:
    """Windows and dead letters of both periods; attempt outcomes of the current one."""
    out = ReportInputs()
    async with await _each(kafka, codec, catalogue, "monitoring.metrics", previous_since) as sub:
        async for received in sub:
            w = received.event
            if isinstance(w, MetricsWindow) and previous_since <= w.window_start < until:
                out.windows.append(w)
    async with await _each(kafka, codec, catalogue, "calls.dlt", previous_since) as sub:
        async for received in sub:
            d = received.event
            if isinstance(d, CallDeadLettered) and previous_since <= d.occurred_at < until:
                out.dead_letters.append(d)
    async with await _each(kafka, codec, catalogue, "calls.results", since) as sub:
        async for received in sub:
            e = received.event
            if isinstance(e, CallFailed) and e.error_class == CircuitOpenError.__name__:
                continue  # refused by the open circuit: the provider was not called
            if isinstance(e, CallSucceeded | CallFailed) and since <= e.occurred_at < until:
                outcome = "succeeded" if isinstance(e, CallSucceeded) else "failed"
                out.attempts.setdefault(e.service, Counter())[(outcome, e.attempt)] += 1
    return out
