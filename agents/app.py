"""The Faust app of the call pipeline, built by a function (nothing happens at import time).

Values are raw bytes (``value_serializer="raw"``): Backbone's Avro :class:`~streams.codec.Codec`
decodes and encodes them, so Faust's own model system is never involved. Topics are created by the
catalogue (``backbone topics apply``), never declared by Faust.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust

from agents.outputs import Output, Source
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
    """Writes :class:`Output` values through the app's producer (flushed before offsets commit)."""

    def __init__(self, app: faust.App, codec: Codec, catalogue: Catalogue) -> None:
        self._app = app
        self._codec = codec
        self._catalogue = catalogue
        self._topics: dict[str, Any] = {}

    def _topic(self, real: str) -> Any:
        topic = self._topics.get(real)
        if topic is None:
            topic = self._topics[real] = self._app.topic(real, value_type=bytes, key_type=bytes)
        return topic

    async def emit(self, output: Output) -> None:
        real = self._catalogue.name(output.topic)
        value = await self._codec.encode(output.event, real)
        headers = {
            **output.headers,
            h.EVENT_TYPE: output.event.event_type.encode(),
            h.SCHEMA_ID: str(int.from_bytes(value[1:5], "big")).encode(),
        }
        if output.event.traceparent:
            headers[h.TRACEPARENT] = output.event.traceparent.encode()
        key = output.key if output.key is not None else output.event.key()
        await self._topic(real).send(key=key, value=value, headers=list(headers.items()))

    async def emit_all(self, outputs: list[Output]) -> None:
        for output in outputs:
            await self.emit(output)

    async def dead_letter_raw(self, event: Any, source: Source, error: BackboneError) -> None:
        """An undecodable record goes, byte for byte, to its topic's dead letter with the reason."""
        spec = self._catalogue.spec(source.topic)
        target = self._catalogue.name(spec.dead_letter or "backbone.undecodable")
        headers = {
            **source.headers,
            h.DLT_REASON: (str(error) or error.code).encode(),
            h.DLT_ERROR_CLASS: type(error).__name__.encode(),
            h.DLT_ORIGINAL_TOPIC: self._catalogue.name(source.topic).encode(),
            h.DLT_ORIGINAL_PARTITION: str(source.partition).encode(),
            h.DLT_ORIGINAL_OFFSET: str(source.offset).encode(),
            h.DLT_ORIGINAL_TIMESTAMP: str(source.timestamp_ms).encode(),
        }
        await self._topic(target).send(
            key=event.key, value=event.value, headers=list(headers.items())
        )


async def decode(codec: Codec, value: bytes | None) -> Event:
    if value is None:
        raise CodecError("record has no value (tombstone)")
    return await codec.decode(value)
