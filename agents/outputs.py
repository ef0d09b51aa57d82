"""Agent decisions as data: what a record was (:class:`Source`) and what to write (:class:`Output`).

Decision code returns outputs instead of writing them, so it runs in unit tests without Kafka and
the runtime decides how to write them (and when the source offset may be committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams import headers as h
from streams.errors import BackboneError
from streams.events import Event
from streams.producer import Publisher
from streams.topics import Catalogue


@dataclass(frozen=True)
class Source:
    """Where the record being handled came from."""

    topic: str  # logical catalogue name
    partition: int
    offset: int
    timestamp_ms: int
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    topic: str  # logical catalogue name
    event: Event
    key: bytes | None = None  # None: the event's own key
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Forward:
    """A record's own bytes, unchanged, to another topic (no decode, no re-encode)."""

    topic: str  # logical catalogue name
    key: bytes
    event_type: str
    headers: dict[str, bytes] = field(default_factory=dict)


def forward_headers(value: bytes, forward: Forward, source: Source) -> dict[str, bytes]:
    """Headers of a record forwarded byte for byte: those an encode of its event would set."""
    headers = {
        **forward.headers,
        h.EVENT_TYPE: forward.event_type.encode(),
        h.SCHEMA_ID: str(int.from_bytes(value[1:5], "big")).encode(),
    }
    if (trace := source.headers.get(h.TRACEPARENT)) is not None:
        headers[h.TRACEPARENT] = trace
    return headers


def dead_letter_of(
    catalogue: Catalogue, source: Source, error: BackboneError
) -> tuple[str, dict[str, bytes]]:
    """Real topic and headers for an undecodable record sent, byte for byte, to a dead letter."""
    spec = catalogue.spec(source.topic)
    target = catalogue.name(spec.dead_letter or "backbone.undecodable")
    return target, {
        **source.headers,
        h.DLT_REASON: h.dead_letter_reason(error),
        h.DLT_ERROR_CLASS: type(error).__name__.encode(),
        h.DLT_MESSAGE: (str(error) or error.code)[:1000].encode(),
        h.DLT_ORIGINAL_TOPIC: catalogue.name(source.topic).encode(),
        h.DLT_ORIGINAL_PARTITION: str(source.partition).encode(),
        h.DLT_ORIGINAL_OFFSET: str(source.offset).encode(),
        h.DLT_ORIGINAL_TIMESTAMP: str(source.timestamp_ms).encode(),
    }


class OutputWriter:
    """Writes outputs through one :class:`~streams.producer.Publisher` (acks=all, idempotent).

    Both pipelines write this way: outputs handed over together share produce batches, their
    acknowledgements are awaited together, and a runtime lets the source offset be committed only
    after :meth:`write_phases` returned.
    """

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def send(self, outputs: Iterable[Output]) -> list[asyncio.Future[Any]]:
        """Hand the outputs over; the futures resolve when the cluster acknowledged them."""
        return [
            await self.publisher.send(o.event, topic=o.topic, key=o.key, headers=o.headers)
            for o in outputs
        ]

    async def acknowledged(self, pending: Sequence[asyncio.Future[Any]]) -> None:
        await self.publisher.acknowledged(pending)

    async def write_phases(self, *phases: Sequence[Output]) -> None:
        """Write each phase and wait for its acknowledgements before the next one."""
        for phase in phases:
            await self.acknowledged(await self.send(phase))
