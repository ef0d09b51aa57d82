"""Publishing typed events: :class:`Publisher` (async) and :class:`SyncPublisher` (for scripts).

A publish returns the record's :class:`Coordinates` only once the cluster acknowledged it with
``acks=all`` on an idempotent producer, so a caller that got coordinates back holds a durable write.
The topic and key come from the catalogue and the event; the value is Avro through the
:class:`~streams.codec.Codec`; headers carry the event type, the schema id and trace context.

Failures are ours, never aiokafka's: :class:`~streams.errors.KafkaUnavailableError` (retriable:
the cluster did not take the write in time) or :class:`~streams.errors.PublishRejectedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner

from streams import headers as h
from streams._aiokafka_compat import close_producer, fail_buffered, sender_failed, track_sent
from streams._kafka_errors import translate
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import (
    BackboneError,
    ConfigurationError,
    KafkaUnavailableError,
    WriteOutcomeUnknownError,
)
from streams.events import Event
from streams.events.calls import CallRequested
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.supervise import Backoff
from streams.topics import Catalogue
from streams.tracing import current_traceparent

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a record key, as aiokafka's ``partitioner.murmur2`` (and the Java
    client) computes it, with the key's words unpacked at once: 3.0 us for a 32-byte key, against
    4.1 us unpacking a word at a time and 6-7 us for aiokafka's. Its equality with aiokafka's is a
    unit test."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    end = length & ~3
    unpack = _WORDS.get(end)
    if unpack is None:
        unpack = _WORDS[end] = struct.Struct(f"<{end >> 2}I").unpack_from
    for k in unpack(data):
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * m) & 0xFFFFFFFF)
    extra = length & 3
    if extra >= 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


#: unpackers of a key's whole 4-byte words, by the words' length in bytes
_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def keyed_partition(key: bytes, partitions: Collection[int]) -> int:
    """The partition aiokafka's ``DefaultPartitioner`` (and the Java client) gives a keyed record."""
    return _keyed(key, sorted(partitions))


def _keyed(key: bytes, every: list[int]) -> int:
    """:func:`keyed_partition` of partitions already sorted."""
    return every[(murmur2(key) & 0x7FFFFFFF) % len(every)]


def _partition(key: bytes | None, every: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (Java's murmur2 for a key, a random available partition
    without one), with our faster :func:`murmur2` for the key (:func:`keyed_partition`). The
    producer's ``partitioner`` (aiokafka's lists are not sorted) and what :class:`_Batches`
    picks an unkeyed record's partition with."""
    if key is None:
        return int(_PARTITIONER(key, every, available))
    return keyed_partition(key, every)


@dataclass(frozen=True)
class Coordinates:
    """Where an acknowledged record lives in the log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def _breaks_sequence(exc: KafkaError) -> bool:
    """Errors after which an idempotent producer's sequence numbers cannot be trusted."""
    return isinstance(exc, _SEQUENCE_ERRORS)


_SEQUENCE_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)


def _routing(event: Event) -> list[tuple[str, bytes]]:
    """Headers a consumer routes by without decoding: a call request's service and priority."""
    if isinstance(event, CallRequested):
        return [
            (h.CALL_SERVICE, event.service.encode()),
            (h.CALL_PRIORITY, event.priority.value.encode()),
        ]
    return []


def schema_id_of(value: bytes) -> int:
    """The registry schema id of a Confluent wire-format value (magic byte 0, 4-byte id)."""
    return int.from_bytes(value[1:5], "big")


class _Batches:
    """Record batches built here, one open batch per partition, submitted once per loop turn.

    ``AIOKafkaProducer.send`` costs a future and an accumulator lookup per record; appending to
    a batch we build costs a quarter of that. Partitions are chosen by the producer's own
    partitioner (Java-compatible murmur2), so keyed records land where any client puts them.
    Batches of one partition are submitted in order by a single flusher, so per-partition order
    is the order records were handed over.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._open: dict[tuple[str, int], tuple[Any, asyncio.Future[Any]]] = {}
        self._ready: list[tuple[str, int, Any, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        producer = self._producer
        partitions = producer.client.cluster.partitions_for_topic(topic)
        if not partitions:  # waits for metadata only the first time a topic is seen
            partitions = await producer.partitions_for(topic)
        every = sorted(partitions)
        partition = _partition(key, every, every) if key is None else _keyed(key, every)
        slot = (topic, partition)
        entry = self._open.get(slot)
        if (
            entry is None
            or entry[0].append(key=key, value=value, timestamp=None, headers=headers) is None
        ):
            if entry is not None:  # full: it goes first, in order
                self._close(slot)
            entry = (producer.create_batch(), asyncio.get_running_loop().create_future())
            self._open[slot] = entry
            if entry[0].append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return entry[1]

    def _close(self, slot: tuple[str, int]) -> None:
        batch, future = self._open.pop(slot)
        batch.close()
        self._ready.append((slot[0], slot[1], batch, future))

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this turn's records join the open batches
        while self._open or self._ready:
            for slot in list(self._open):
                self._close(slot)
            ready, self._ready = self._ready, []
            for topic, partition, batch, future in ready:
                try:
                    sent = await self._producer.send_batch(batch, topic, partition=partition)
                except BaseException as exc:
                    if not future.done():
                        future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                _chain(sent, future)

    async def flushed(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    def fail(self, exc: BaseException) -> None:
        """Fail every record not yet handed to the producer (its producer is being retired)."""
        for _, future in self._open.values():
            if not future.done():
                future.set_exception(exc)
        for *_, future in self._ready:
            if not future.done():
                future.set_exception(exc)
        self._open.clear()
        self._ready.clear()
        if self._flusher is not None:
            self._flusher.cancel()


def _nobody_waits(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Their caller stopped waiting: a failure that comes later is expected, not "never
    retrieved" (a shield drops its callback on the inner future once the outer is cancelled)."""

    def seen(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()

    for future in futures:
        future.add_done_callback(seen)


async def _settled(future: asyncio.Future[Any], budget: float) -> bool:
    """Wait until ``future`` is done (True) or ``budget`` seconds passed (False).

    Never cancels ``future``: a caller that stops waiting must not, or the producer could no
    longer account for its batch. Bounded: with the cluster gone, aiokafka may never resolve it
    (aiokafka#1101). One waiter and one timer: what ``asyncio.timeout`` around
    ``asyncio.shield`` does, at half its CPU (4 us instead of 9 us a record, uvloop).
    """
    return await _all_settled([future], budget)


async def _all_settled(futures: Sequence[asyncio.Future[Any]], budget: float) -> bool:
    """:func:`_settled` for several futures: True once every one is done or one failed (the
    caller reads which from them), False after ``budget`` seconds. One waiter and one timer
    however many futures; none of them is ever cancelled."""
    waiting = [future for future in futures if not future.done()]
    left = len(waiting)
    if not left or any(_failed_future(f) for f in futures):
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(future: asyncio.Future[Any] | None = None) -> None:
        nonlocal left
        if future is not None:  # None: the timer
            left -= 1
            if left and not _failed_future(future):
                return
        if not waiter.done():
            waiter.set_result(None)

    for future in waiting:
        future.add_done_callback(wake)
    timer = loop.call_later(budget, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        for future in waiting:
            future.remove_done_callback(wake)
    # their state, not the count: a future may be done with its callback not run yet
    return all(f.done() for f in futures) or any(_failed_future(f) for f in futures)


def _failed_future(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    def done(fut: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if fut.cancelled():
            target.cancel()
        elif (exc := fut.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(fut.result())

    source.add_done_callback(done)


class Publisher:
    """Publishes events to their catalogue topics; an async context manager (start/stop)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        catalogue: Catalogue,
        *,
        transactional_id: str | None = None,
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._catalogue = catalogue
        self._transactional_id = transactional_id
        self._producer: AIOKafkaProducer | None = None
        self._batches: _Batches | None = None
        self._routes: dict[tuple[str, str | None], str] = {}
        self._fixed_headers: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        #: aiokafka expires a batch after request_timeout_ms; this is the backstop beyond it
        self._ack_timeout_s = 2 * kafka.request_timeout_ms / 1000
        self._connecting: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._running = False
        #: how many times a producer was retired and replaced by one with a fresh producer id
        self.rebuilds = 0
        self._last_ack = 0.0  # monotonic time of the last acknowledgement
        self._last_failure = 0.0  # ... and of the last failed or withdrawn write
        self._connected_at = 0.0  # ... and when the current producer connected
        self._problem: str | None = "not started"

    async def start(self, *, wait: bool = True) -> None:
        """Connect. ``wait=False``: if Kafka cannot be reached, return anyway and keep connecting
        in the background (writes meanwhile raise :class:`KafkaUnavailableError`; see
        :meth:`problem`)."""
        self._running = True
        try:
            self._producer = await self._connect()
        except KafkaUnavailableError as exc:
            if wait:
                raise
            self._problem = f"connecting: {exc}"
            log.warning("publisher: Kafka is not reachable yet; connecting in the background")
            self._reconnect_in_background()
            return
        self._problem, self._connected_at = None, time.monotonic()

    async def _connect(self) -> AIOKafkaProducer:
        compression = None if self._kafka.compression == "none" else self._kafka.compression
        producer = AIOKafkaProducer(
            **client_options(self._kafka),
            client_id=f"{self._kafka.client_id}-publisher",
            acks="all",
            enable_idempotence=True,
            partitioner=_partition,
            linger_ms=self._kafka.linger_ms,
            compression_type=compression,
            request_timeout_ms=self._kafka.request_timeout_ms,
            transactional_id=self._transactional_id,
        )
        track_sent(producer)  # so a withdrawal can tell "never sent" from "may be written"
        try:
            async with asyncio.timeout(self._kafka.request_timeout_ms / 1000):
                await producer.start()
        except BaseException as exc:  # cancelled too (stop() while connecting): never leak it
            with contextlib.suppress(Exception):
                await close_producer(producer, 1.0)
            if not isinstance(exc, KafkaError | TimeoutError):
                raise
            if isinstance(exc, TimeoutError):
                raise KafkaUnavailableError(
                    f"starting a producer on {self._kafka.bootstrap}: no answer in time"
                ) from exc
            raise translate(exc, f"starting a producer on {self._kafka.bootstrap}") from exc
        return producer

    def _reconnect_in_background(self) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._reconnect(), name="publisher-connect")

    async def _reconnect(self) -> None:
        """Connect until it works (capped, jittered back-off); the only loop that builds producers."""
        backoff = Backoff(first_s=0.2, cap_s=5.0)
        while self._running and self._producer is None:
            try:
                producer = await self._connect()
            except BackboneError as exc:
                self._problem = f"connecting: {exc}"
                log.debug("publisher: %s", self._problem)
                await asyncio.sleep(backoff.next())
                continue
            except Exception as exc:  # never let the only connecting loop die silently
                self._problem = f"connecting: {type(exc).__name__}: {exc}"
                log.warning("publisher: %s", self._problem, exc_info=exc)
                await asyncio.sleep(backoff.next())
                continue
            if not self._running:
                await close_producer(producer, 1.0)
                return
            self._producer, self._problem = producer, None
            self._connected_at = time.monotonic()
            if self.rebuilds:
                log.info("publisher: producer rebuilt with a fresh producer id (%d)", self.rebuilds)

    def retire(self, reason: str) -> None:
        """Withdraw everything the current producer holds and replace it with a fresh one.

        Every record not yet acknowledged fails now with :class:`KafkaUnavailableError` and is
        never sent later, so a caller that stops waiting (a 503) leaves nothing behind. The next
        producer has a new producer id and fresh sequence numbers, which is how an idempotent
        producer recovers from a broken sequence (what the Java client does by bumping its epoch;
        aiokafka never resets it, aiokafka#1017). Until it is connected, writes fail at once.
        Safe with concurrent senders: records go either to the old producer (and fail) or the new.
        """
        producer, self._producer = self._producer, None
        batches, self._batches = self._batches, None
        if producer is None:
            return  # already being rebuilt
        self.rebuilds += 1
        self._last_failure = time.monotonic()
        self._problem = f"rebuilding the producer: {reason}"
        log.warning("publisher: retiring the producer (%s); a fresh one replaces it", reason)
        withdrawn = KafkaUnavailableError(f"not written: {reason}")
        if batches is not None:
            batches.fail(withdrawn)
        sent = WriteOutcomeUnknownError(f"sent, but not acknowledged: {reason}")
        fail_buffered(producer, withdrawn, sent)
        closing = asyncio.create_task(close_producer(producer, 1.0), name="publisher-retire")
        self._retiring.add(closing)
        closing.add_done_callback(self._retired)
        if self._running:
            self._reconnect_in_background()

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("publisher: closing a retired producer: %s", exc)

    def _failed(self, exc: BaseException) -> None:
        """A write failed. A delivery failure of an idempotent producer may leave its sequence
        numbers broken (expired batches, OutOfOrderSequenceNumber...): retire it to be safe."""
        self._last_failure = time.monotonic()
        if isinstance(exc, TimeoutError):
            self.retire(f"no acknowledgement within {self._ack_timeout_s:g} s")
        elif isinstance(exc, KafkaError):
            self.retire(f"{type(exc).__name__}: {exc}")
        elif self._producer is not None and sender_failed(self._producer):
            self.retire("its sender stopped")

    def _ok(self) -> None:
        self._last_ack = time.monotonic()

    def problem(self) -> str | None:
        """Why a write cannot be acknowledged now, or None: for readiness checks.

        Not ready while no producer is connected (starting, or being rebuilt), and after a write
        of the current producer failed until a later one was acknowledged. (A failed delivery
        retires its producer, so a producer connected after the failure counts as ready.)
        """
        if not self._running:
            return "not started"
        if self._producer is None:
            return self._problem or "connecting"
        if sender_failed(self._producer):
            return "the producer's sender stopped"
        if self._last_failure > max(self._last_ack, self._connected_at):
            return "the last write failed"
        return None

    async def probe(self) -> str | None:
        """Ask the cluster for metadata over this publisher's own connections: None when it
        answered and a write could be acknowledged now, else why not (readiness)."""
        producer = self._producer
        if producer is None:
            return self.problem() or "connecting"
        try:
            answered = await producer.client.force_metadata_update()
        except KafkaError as exc:
            return f"metadata request failed: {type(exc).__name__}: {exc}"
        if not answered:
            return "the cluster did not answer a metadata request"
        return self.problem()

    async def stop(self) -> None:
        """Flush what is in flight and close; safe to call twice."""
        self._running = False
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        producer, self._producer = self._producer, None
        batches, self._batches = self._batches, None
        if batches is not None:
            await batches.flushed()
        if producer is not None:
            await close_producer(producer, self._ack_timeout_s)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self._problem = "not started"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def topic_for(self, event: Event, topic: str | None = None) -> str:
        """The real topic name an event goes to (``topic`` is a logical catalogue name)."""
        route = (event.event_type, topic)
        real = self._routes.get(route)
        if real is None:  # the catalogue is scanned once per event type and topic, not per record
            logical = (
                topic if topic is not None else self._catalogue.for_event(event.event_type).name
            )
            real = self._routes[route] = self._catalogue.name(logical)
        return real

    def _headers(self, event: Event, value: bytes) -> list[tuple[str, bytes]]:
        schema_id = schema_id_of(value)
        fixed = self._fixed_headers.get((event.event_type, schema_id))
        if fixed is None:
            fixed = self._fixed_headers[(event.event_type, schema_id)] = [
                (h.EVENT_TYPE, event.event_type.encode()),
                (h.SCHEMA_ID, str(schema_id).encode()),
            ]
        headers = [*fixed, *_routing(event)]
        traceparent = event.traceparent or current_traceparent()  # tracing hook (streams.tracing)
        if traceparent:
            headers.append((h.TRACEPARENT, traceparent.encode()))
        return headers

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            if self._running:  # connecting, or a retired producer being replaced
                raise KafkaUnavailableError(f"not written: {self._problem or 'connecting'}")
            raise ConfigurationError(
                "the Publisher is not started: use `async with Publisher(...)`"
            )
        return self._producer

    def _send_failed(self, producer: AIOKafkaProducer, exc: KafkaError) -> None:
        """``send`` refused a record before buffering it: only a dead producer needs replacing
        (a too-large record does not)."""
        dead = sender_failed(producer) or _breaks_sequence(exc)
        if dead and producer is self._producer:
            self.retire(f"{type(exc).__name__}: {exc}")

    def _withdraw(self, futures: Sequence[asyncio.Future[Any]]) -> None:
        """The caller stopped waiting (its own timeout, a cancelled request): what it handed over
        must not be written later, so the producer's buffer is failed and the producer replaced."""
        _nobody_waits(futures)
        if not all(f.done() for f in futures):
            self.retire("a writer stopped waiting for its acknowledgement; its record is withdrawn")

    async def _record(
        self,
        event: Event,
        topic: str | None,
        key: bytes | None,
        extra: Mapping[str, bytes] | None,
    ) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        """Real topic, key, value and headers of the record for ``event``."""
        real = self.topic_for(event, topic)
        # the synchronous path once the schema id is cached: no await per record on the hot path
        value = self._codec.encode_cached(event, real) or await self._codec.encode(event, real)
        record_headers = self._headers(event, value)
        if extra:  # ours win over a caller's header of the same name
            ours = {name for name, _ in record_headers}
            record_headers = [(k, v) for k, v in extra.items() if k not in ours] + record_headers
        return real, event.key() if key is None else key, value, record_headers

    async def _send(
        self,
        event: Event,
        topic: str | None,
        key: bytes | None,
        extra: Mapping[str, bytes] | None,
    ) -> asyncio.Future[Any]:
        """Encode and hand one record to the producer's buffer; the future resolves on ack."""
        real, key, value, headers = await self._record(event, topic, key, extra)
        producer = self._started()
        try:
            future: asyncio.Future[Any] = await producer.send(real, value, key=key, headers=headers)
        except KafkaError as exc:
            self._send_failed(producer, exc)
            raise translate(exc, f"publishing {event.event_type} to {real}") from exc
        return future

    def _budget(self, deadline: float | None) -> float:
        """Seconds to wait for an acknowledgement: until ``deadline`` (monotonic), at most the
        publisher's own backstop."""
        if deadline is None:
            return self._ack_timeout_s
        return max(0.0, min(self._ack_timeout_s, deadline - time.monotonic()))

    def _unacknowledged(
        self, futures: Sequence[asyncio.Future[Any]], what: str, budget: float
    ) -> KafkaUnavailableError:
        """The error for records whose acknowledgement did not come in time, once their producer
        was retired: "not written" only if every one was withdrawn before it was ever sent."""
        message = f"{what}: no acknowledgement within {budget:.1f} s"
        for future in futures:
            if not future.done() or future.cancelled():
                return WriteOutcomeUnknownError(f"{message}; it may have been written")
            exc = future.exception()
            if isinstance(exc, WriteOutcomeUnknownError):
                return WriteOutcomeUnknownError(f"{message}; it may have been written")
        return KafkaUnavailableError(f"{message}; not written")

    async def _acknowledged(
        self, future: asyncio.Future[Any], event: Event, deadline: float | None = None
    ) -> Coordinates:
        budget = self._budget(deadline)
        try:
            if not await _settled(future, budget):
                raise TimeoutError
            meta = future.result()
        except asyncio.CancelledError:
            self._withdraw([future])
            raise
        except KafkaError as exc:
            self._failed(exc)
            raise translate(exc, f"publishing {event.event_type}") from exc
        except TimeoutError as exc:
            _nobody_waits([future])
            self._failed(exc)
            raise self._unacknowledged([future], f"publishing {event.event_type}", budget) from exc
        except BackboneError:
            self._last_failure = time.monotonic()
            raise
        self._ok()
        return Coordinates(meta.topic, meta.partition, meta.offset, meta.timestamp)

    async def publish(
        self,
        event: Event,
        *,
        topic: str | None = None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
    ) -> Coordinates:
        """Publish one event; returns once the cluster acknowledged it.

        ``timeout_s`` bounds the wait for the acknowledgement. Past it the record is withdrawn:
        :class:`KafkaUnavailableError` when it was never sent (not written, never written later),
        :class:`WriteOutcomeUnknownError` when it was already on the wire (it may be in the log).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return await self._acknowledged(
            await self._send(event, topic, key, headers), event, deadline
        )

    async def send(
        self,
        event: Event,
        *,
        topic: str | None = None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one event over without waiting; the future resolves when the cluster acknowledged it.

        For pipelines that hand over many records and then wait once (:meth:`acknowledged`):
        records handed over in the same event-loop turn travel in shared batches (a quarter of
        the CPU of one ``send`` per record). Use :meth:`publish` for the record's coordinates.
        """
        real = self.topic_for(event, topic)
        value = self._codec.encode_cached(event, real) or await self._codec.encode(event, real)
        record_headers = self._headers(event, value)
        if headers:  # ours win over a caller's header of the same name
            ours = {name for name, _ in record_headers}
            record_headers = [(k, v) for k, v in headers.items() if k not in ours] + record_headers
        return await self.send_raw(real, event.key() if key is None else key, value, record_headers)

    async def send_raw(
        self, real_topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        """:meth:`send` for already-encoded bytes (forwarding a record without re-encoding)."""
        producer = self._started()
        if self._batches is None:
            self._batches = _Batches(producer)
        try:
            return await self._batches.add(real_topic, key, value, headers)
        except KafkaError as exc:
            self._send_failed(producer, exc)
            raise translate(exc, f"writing a record to {real_topic}") from exc

    async def acknowledged(self, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Wait until every handed-over record is acknowledged; raises the first failure."""
        if not futures:
            return
        # records handed over in one loop turn share their batch's future: each is waited for
        # once, by one waiter and one timer (no gathering future, shield or timeout per call)
        distinct = futures if len(futures) == 1 else list(dict.fromkeys(futures))
        try:
            if not await _all_settled(distinct, self._ack_timeout_s):
                raise TimeoutError
            for future in distinct:  # the first failure, in the order handed over
                if future.done():
                    future.result()  # raises its failure (CancelledError if it was cancelled)
        except asyncio.CancelledError:
            self._withdraw(futures)
            raise
        except KafkaError as exc:
            _nobody_waits(futures)  # the others' failures are expected now, read or not
            self._failed(exc)
            raise translate(exc, f"writing {len(futures)} records") from exc
        except TimeoutError as exc:
            _nobody_waits(futures)
            self._failed(exc)
            raise self._unacknowledged(
                futures, f"writing {len(futures)} records", self._ack_timeout_s
            ) from exc
        except BackboneError:
            _nobody_waits(futures)
            self._last_failure = time.monotonic()
            raise
        self._ok()

    async def publish_each(
        self, events: Sequence[Event], *, topic: str | None = None, timeout_s: float | None = None
    ) -> list[Coordinates | BackboneError]:
        """Send every event, then await every acknowledgement: one outcome per event, in order.

        Kafka failures come back as values, so a caller can report per event (the HTTP batch
        endpoint does); errors that are bugs (not Backbone errors) still raise. ``timeout_s``
        bounds the whole wait, as in :meth:`publish`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending: list[asyncio.Future[Any] | BackboneError] = []
        for event in events:
            try:
                pending.append(await self._send(event, topic, None, None))
            except BackboneError as exc:
                pending.append(exc)
        outcomes: list[Coordinates | BackboneError] = []
        for event, item in zip(events, pending, strict=True):
            if isinstance(item, BackboneError):
                outcomes.append(item)
                continue
            try:
                outcomes.append(await self._acknowledged(item, event, deadline))
            except BackboneError as exc:
                outcomes.append(exc)
        return outcomes

    async def publish_many(
        self, events: Sequence[Event], *, topic: str | None = None
    ) -> list[Coordinates]:
        """Send every event, then await every acknowledgement (batched by linger).

        Raises the first failure after every send has settled; earlier records may have been
        written, so use :meth:`transaction` when a batch must be all-or-nothing.
        """
        outcomes = await self.publish_each(events, topic=topic)
        for outcome in outcomes:
            if isinstance(outcome, BackboneError):
                raise outcome
        return [o for o in outcomes if isinstance(o, Coordinates)]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Atomic multi-topic writes: everything published inside commits together, or not at all.

        Needs ``transactional_id``; readers see the records only with
        ``isolation_level="read_committed"``.

        Every step is bounded by the acknowledgement backstop (twice ``request_timeout_ms``):
        with the cluster gone, aiokafka's begin, commit and abort wait for ever (their search for
        the transaction coordinator never ends), and so would a caller's shutdown.

        - a begin without an answer raises :class:`KafkaUnavailableError` (nothing written);
        - an error inside the block aborts; an abort without an answer retires the producer and
          the block's own error is raised: the transaction is never committed;
        - a commit without an answer (or that failed) retires the producer and raises
          :class:`WriteOutcomeUnknownError` (or the failure's own error): the coordinator may
          have begun the commit, which then completes, or aborts the transaction.

        A retired producer's replacement has the same transactional id, so the coordinator fences
        the old one: it can commit nothing later.
        """
        producer = self._started()
        if self._transactional_id is None:
            raise ConfigurationError("transactions need Publisher(..., transactional_id=...)")
        bound = self._ack_timeout_s
        try:
            async with asyncio.timeout(bound):
                await producer.begin_transaction()  # waits for a producer id
        except KafkaError as exc:
            raise translate(exc, "beginning a transaction") from exc
        except TimeoutError as exc:
            raise KafkaUnavailableError(
                f"beginning a transaction: no producer id within {bound:g} s; nothing written"
            ) from exc
        try:
            yield
            await self._flushed_within(bound)  # records handed over with send() join the commit
        except BaseException:
            await self._abort(producer, bound)
            raise
        try:
            async with asyncio.timeout(bound):
                await producer.commit_transaction()
        except KafkaError as exc:
            self._retire_after_transaction(producer, f"committing a transaction failed: {exc!r}")
            raise translate(exc, "committing a transaction") from exc
        except TimeoutError as exc:
            reason = f"a transaction's commit got no answer within {bound:g} s"
            self._retire_after_transaction(producer, reason)
            raise WriteOutcomeUnknownError(
                f"committing a transaction: no answer within {bound:g} s; it may be committed"
            ) from exc

    async def _flushed_within(self, bound: float) -> None:
        """Records handed over with ``send()`` are in the producer's buffer (inside a transaction:
        any failure here aborts it, so they are not written)."""
        batches = self._batches
        if batches is None:
            return
        try:
            async with asyncio.timeout(bound):
                await batches.flushed()
        except TimeoutError as exc:
            raise KafkaUnavailableError(
                f"handing a transaction's records to the producer: not done in {bound:g} s"
            ) from exc

    async def _abort(self, producer: AIOKafkaProducer, bound: float) -> None:
        """Abort the open transaction of ``producer``, waiting at most ``bound`` seconds; never
        raises (the caller re-raises the error that made it abort)."""
        retired = producer is not self._producer
        if retired:  # meanwhile (a failed write): its replacement's fencing aborts the transaction
            return
        try:
            async with asyncio.timeout(bound):
                await producer.abort_transaction()
        except Exception as exc:  # TimeoutError, KafkaError, aiokafka's AssertionError of state
            self._retire_after_transaction(producer, f"aborting a transaction: {exc!r}")

    def _retire_after_transaction(self, producer: AIOKafkaProducer, reason: str) -> None:
        """Its transaction state is stuck (committing, aborting, or failed): aiokafka would refuse
        the next ``begin_transaction``, so a fresh producer replaces it."""
        if producer is self._producer:
            self.retire(reason)


class SyncPublisher:
    """A blocking :class:`Publisher` for scripts and notebooks (not for code already in a loop).

    ::

        with SyncPublisher(kafka, registry, catalogue) as publisher:
            coordinates = publisher.publish(event)
    """

    def __init__(
        self, kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue
    ) -> None:
        self._kafka = kafka
        self._registry = registry
        self._catalogue = catalogue
        self._runner: asyncio.Runner | None = None
        self._publisher: Publisher | None = None
        self._registry_client: RegistryClient | None = None

    def __enter__(self) -> Self:
        self._runner = asyncio.Runner()
        self._registry_client = RegistryClient(self._registry)
        self._publisher = Publisher(self._kafka, Codec(self._registry_client), self._catalogue)
        try:
            self._runner.run(self._publisher.start())
        except BaseException:
            self._runner.run(self._registry_client.close())
            self._runner.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, publisher = self._parts()
        try:
            runner.run(publisher.stop())
            if self._registry_client is not None:
                runner.run(self._registry_client.close())
        finally:
            runner.close()
            self._runner = self._publisher = self._registry_client = None

    def _parts(self) -> tuple[asyncio.Runner, Publisher]:
        if self._runner is None or self._publisher is None:
            raise ConfigurationError("use `with SyncPublisher(...) as publisher:`")
        return self._runner, self._publisher

    def publish(self, event: Event, *, topic: str | None = None) -> Coordinates:
        runner, publisher = self._parts()
        return runner.run(publisher.publish(event, topic=topic))

    def publish_many(
        self, events: Sequence[Event], *, topic: str | None = None
    ) -> list[Coordinates]:
        runner, publisher = self._parts()
        return runner.run(publisher.publish_many(events, topic=topic))


def publish_sync(
    event: Event, *, kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue
) -> Coordinates:
    """Publish one event from synchronous code (opens and closes a producer: for scripts only)."""
    with SyncPublisher(kafka, registry, catalogue) as publisher:
        return publisher.publish(event)
