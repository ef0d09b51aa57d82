"""The Faust app of the call pipeline, built by a function (nothing happens at import time).

Values are raw bytes (``value_serializer="raw"``): Backbone's Avro :class:`~streams.codec.Codec`
decodes and encodes them, so Faust's own model system is never involved. Topics are created by the
catalogue (``backbone topics apply``), never declared by Faust.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.outputs import Source
from agents.settings import WorkerSettings
from streams.codec import Codec
from streams.errors import CodecError
from streams.events import Event
from streams.settings import KafkaSettings
from streams.topics import Catalogue

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


def faust_connection(kafka: KafkaSettings) -> dict[str, Any]:
    """``faust.App`` arguments naming the cluster and how to authenticate: every bootstrap server
    (Faust separates URLs with ``;``) and the TLS/SASL settings our aiokafka clients get too."""
    import faust

    from streams.connection import ssl_context

    broker = ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap.split(","))
    context = ssl_context(kafka) if kafka.uses_tls else None
    credentials: faust.types.auth.CredentialsT | None = None
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None  # KafkaSettings checks it
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {"broker": broker, "broker_credentials": credentials}


def create_app(
    kafka: KafkaSettings, settings: WorkerSettings, *, datadir: Path | None = None
) -> faust.App:
    import faust  # only the Faust runtime pays for it

    return faust.App(
        settings.group_id,
        **faust_connection(kafka),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        datadir=str(datadir or tempfile.mkdtemp(prefix="backbone-faust-")),
        processing_guarantee="at_least_once",
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


async def decode(codec: Codec, value: bytes | None) -> Event:
    if value is None:
        raise CodecError("record has no value (tombstone)")
    return await codec.decode(value)


@contextmanager
def acked_only_if_done(events: list[Any], what: str) -> Iterator[None]:
    """Faust acks what it handed to an agent whether or not the agent handled it (``take_events``
    in a ``finally``; ``events()`` on the next step): events whose outputs were not all written
    (an error, or cancelled by a stop) are left unacknowledged, so they are never committed
    unhandled; their partition's next owner (or this worker after a rebalance) reads them again.
    The error still propagates: Faust logs the actor's crash and its supervisor restarts it."""
    try:
        yield
    except BaseException as exc:
        unacknowledged(events)
        if isinstance(exc, Exception):
            log.error(
                "%s: %d records not handled, left unacknowledged (read again): %s: %s",
                what,
                len(events),
                type(exc).__name__,
                exc,
            )
        raise


def unacknowledged(events: list[Any]) -> None:
    """Keep Faust from acknowledging these events: ``take_events`` acks every event it yielded
    (in a ``finally``, even when the batch failed); one reference more than it drops keeps each
    from its final ack, so its offset is never committed here."""
    for event in events:
        event.message.incref()
