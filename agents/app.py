"""The Faust app of the call pipeline, built by a function (nothing happens at import time).

Values are raw bytes (``value_serializer="raw"``): Backbone's Avro :class:`~streams.codec.Codec`
decodes and encodes them, so Faust's own model system is never involved. Topics are created by the
catalogue (``backbone topics apply``), never declared by Faust.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from typing import Any

import faust

from agents.outputs import Output, Source, dead_letter_of
from agents.settings import WorkerSettings
from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError, CodecError
from streams.events import Event
from streams.settings import KafkaSettings
from streams.topics import Catalogue


def create_app(
    kafka: KafkaSettings, settings: WorkerSettings, *, datadir: Path | None = None
) -> faust.App:
    return faust.App(
        settings.group_id,
        broker=f"kafka://{kafka.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        datadir=str(datadir or tempfile.mkdtemp(prefix="backbone-faust-")),
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=2000,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=max(1, kafka.linger_ms),
        stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    )


def source_of(event: Any, catalogue: Catalogue) -> Source:
    """The :class:`Source` of a Faust event (``stream.events()`` item)."""
    message = event.message
    return Source(
        topic=catalogue.logical(message.topic),
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else 0,
        headers=headers_of(event.headers),
    )


def headers_of(raw: Any) -> dict[str, bytes]:
    if raw is None:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): bytes(v) for k, v in items if v is not None}


class FaustEmitter:
    """Writes :class:`Output` values through the app's producer (flushed before offsets commit).

    Under at-least-once (``direct``) records go straight to the app's Kafka producer, skipping
    Faust's per-message bookkeeping (``FutureMessage``, sensors); Faust still flushes that producer
    before it commits offsets. :meth:`emit_all` hands a whole batch over first and then awaits
    every delivery, so a batch's outcomes are durable (acks=all) before its offsets are acked.
    Under exactly-once the records go through Faust's topics, whose sends join the transaction.
    """

    def __init__(
        self, app: faust.App, codec: Codec, catalogue: Catalogue, *, direct: bool = False
    ) -> None:
        self._app = app
        self._codec = codec
        self._catalogue = catalogue
        self._direct = direct
        self._topics: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        #: Headers every record of one event type and schema id carries (built once).
        self._fixed: dict[tuple[str, int], dict[str, bytes]] = {}

    def _topic(self, real: str) -> Any:
        topic = self._topics.get(real)
        if topic is None:
            topic = self._topics[real] = self._app.topic(real, value_type=bytes, key_type=bytes)
        return topic

    def real(self, logical: str) -> str:
        name = self._names.get(logical)
        if name is None:
            name = self._names[logical] = self._catalogue.name(logical)
        return name

    async def send(self, output: Output) -> Awaitable[Any] | None:
        """Hand one output to the producer; returns its delivery (None under exactly-once)."""
        real = self.real(output.topic)
        event = output.event
        value = self._codec.encode_cached(event, real)
        if value is None:
            value = await self._codec.encode(event, real)
        schema_id = int.from_bytes(value[1:5], "big")
        fixed = self._fixed.get((event.event_type, schema_id))
        if fixed is None:
            fixed = self._fixed[(event.event_type, schema_id)] = {
                h.EVENT_TYPE: event.event_type.encode(),
                h.SCHEMA_ID: str(schema_id).encode(),
            }
        headers = {**output.headers, **fixed}
        if event.traceparent:
            headers[h.TRACEPARENT] = event.traceparent.encode()
        key = output.key if output.key is not None else event.key()
        return await self.send_raw(real, key, value, headers)

    async def send_raw(
        self, real: str, key: bytes | None, value: bytes | None, headers: Mapping[str, bytes]
    ) -> Awaitable[Any] | None:
        """Hand already-encoded bytes to the producer (the router forwards requests this way)."""
        if self._direct:
            delivery: Awaitable[Any] = await self._app.producer.send(
                real, key, value, None, None, list(headers.items())
            )
            return delivery
        await self._topic(real).send(key=key, value=value, headers=list(headers.items()))
        return None

    async def emit(self, output: Output) -> None:
        await self.wait([await self.send(output)])

    async def emit_all(self, outputs: Iterable[Output]) -> None:
        await self.wait([await self.send(output) for output in outputs])

    @staticmethod
    async def wait(deliveries: Iterable[Awaitable[Any] | None]) -> None:
        """Wait until every handed-over record is acknowledged by the broker."""
        pending = [d for d in deliveries if d is not None]
        if pending:
            await asyncio.gather(*pending)

    async def dead_letter_raw(self, event: Any, source: Source, error: BackboneError) -> None:
        """An undecodable record goes, byte for byte, to its topic's dead letter with the reason."""
        target, headers = dead_letter_of(self._catalogue, source, error)
        await self.wait([await self.send_raw(target, event.key, event.value, headers)])


async def decode(codec: Codec, value: bytes | None) -> Event:
    if value is None:
        raise CodecError("record has no value (tombstone)")
    return await codec.decode(value)
