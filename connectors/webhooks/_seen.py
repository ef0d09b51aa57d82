"""Replay protection for inbound webhooks: the ids each source has already had accepted.

The set lives in ``webhooks.inbound`` itself: every accepted ``webhook.received`` carries its key
(``{source}/{webhook-id}``) in the ``webhook-seen`` header, so it survives restarts and is shared
by every gateway without a second record per webhook. (Older gateways wrote the key as a separate
marker to the compacted ``webhooks.seen`` topic; that topic is still read, keyed the same way, so
their ids stay refused.) Each gateway holds the set in a local SQLite store
(:mod:`connectors.webhooks._seen_store`) with the offsets it has read the topic to. On start it
reads only what was written since its checkpoint (a new or lost store: the last ``window_s`` of
the topic), then tails the topic, so ids accepted by another gateway arrive within moments (at
most :data:`FETCH_WAIT_MS` after they were written, plus the fetch). Ids older than the window
are forgotten, so memory and the file stay bounded: keep the window longer than senders retry
(Standard Webhooks senders give up after days; their timestamps are checked within minutes, so an
older replay is refused anyway).

Two identical requests racing inside one gateway are serialised by :meth:`SeenSet.claim`: the
second waits for the first and then sees its outcome. Across gateways a race inside the tailing
lag can still produce a duplicate ``webhook.received``; it carries the same ``webhook_id``, which
consumers deduplicate on (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connectors.webhooks._seen_store import SeenStore
from streams._offset_store import seek_from
from streams.follow import TopicFollower
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Ids are remembered this long by default (Svix disables an endpoint after 5 days of failures).
DEFAULT_WINDOW_S = 7 * 24 * 3600.0
#: The record header of an accepted ``webhook.received`` that holds its seen-set key.
SEEN_HEADER = "webhook-seen"
#: The follower's fetch is held at the broker until this much is there, or :data:`FETCH_WAIT_MS`
#: passed: under load one fetch carries many ids instead of one per accepted webhook (each fetch
#: costs the gateway and the broker about as much CPU as the webhook's own write). A gateway adds
#: the ids it accepts itself at once; only ids accepted by *another* gateway arrive up to this
#: much later, far inside the seconds to days in which senders retry. 200 ms, not more: it is
#: also the window in which a retry landing on another gateway process (``--workers``) can pass
#: twice; idle, it is five empty fetches a second instead of one long poll.
FETCH_MIN_BYTES = 64 * 1024
FETCH_WAIT_MS = 200


def seen_key(source: str, webhook_id: str) -> bytes:
    return f"{source}/{webhook_id}".encode()


def _now_ms() -> int:
    return int(time.time() * 1000)


class SeenSet:
    def __init__(
        self,
        kafka: KafkaSettings,
        inbound: str | None,
        *,
        markers: str | None = None,
        store_dir: Path | None = None,
        window_s: float | None = DEFAULT_WINDOW_S,
        checkpoint_records: int = 20_000,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        """``inbound``: ``webhooks.inbound``, whose records carry their key in the
        ``webhook-seen`` header (a record without one, written by something other than the
        ingress, is no id); ``markers``: ``webhooks.seen``, whose record keys are ids.
        ``store_dir``: where the store lives (None: a temporary folder removed at stop, so
        a restart reads the window again); ``window_s``: how long ids are remembered."""
        self._store_dir = store_dir
        self.window_ms = None if window_s is None else int(window_s * 1000)
        self._checkpoint_records = checkpoint_records
        self._checkpoint_interval_s = checkpoint_interval_s
        self._store: SeenStore | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        #: ids learned since the last checkpoint -> when seen (ms); the rest are in the store
        self._fresh: dict[bytes, int] = {}
        self._positions: dict[tuple[str, int], int] = {}
        self._last_checkpoint = time.monotonic()
        self._inflight: dict[bytes, tuple[asyncio.Lock, int]] = {}
        #: records read from the topic since start (a restart from a checkpoint reads few)
        self.records_read = 0
        #: ids forgotten beyond the window since start
        self.evicted = 0
        self._markers = markers
        topics = [t for t in (inbound, markers) if t is not None]
        if not topics:
            raise ValueError("a seen-set reads ids from at least one topic")
        self._follower = TopicFollower(
            kafka,
            topics,
            self._apply,
            start_at=self._start_at,
            on_batch=self._after_batch,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.records_read += 1
        if record.value is None:  # a tombstone
            return
        if record.topic == self._markers:
            key = record.key
        else:
            key = next((v for k, v in record.headers if k == SEEN_HEADER), None)
        if key is not None:
            self._fresh[key] = max(self._fresh.get(key, 0), record.timestamp)

    def __contains__(self, key: bytes) -> bool:
        return key in self._fresh or (self._store is not None and key in self._store)

    def __len__(self) -> int:
        """Ids remembered (checkpoints them first)."""
        if self._store is None:
            return len(self._fresh)
        self.checkpoint()
        return self._store.count()

    @property
    def pending(self) -> int:
        """Ids held in memory until the next checkpoint."""
        return len(self._fresh)

    def add(self, key: bytes) -> None:
        self._fresh[key] = max(self._fresh.get(key, 0), _now_ms())

    async def start(self) -> None:
        """Open the store, read the topic from its checkpoint to the end, then keep following."""
        directory = self._store_dir
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="backbone-seen-")
            directory = Path(self._temporary.name)
        self._store = SeenStore.open_in(directory)
        try:
            await self._follower.start()
        except BaseException:
            self._close_store()
            raise

    async def stop(self) -> None:
        await self._follower.stop()
        if self._store is not None:
            self.checkpoint()
        self._close_store()

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()
        temporary, self._temporary = self._temporary, None
        if temporary is not None:
            temporary.cleanup()

    def checkpoint(self) -> None:
        """Write the ids learned and the offsets they reflect; forget ids beyond the window."""
        if self._store is None:
            return
        evict = None if self.window_ms is None else _now_ms() - self.window_ms
        self.evicted += self._store.checkpoint(self._fresh, self._positions, evict)
        self._fresh.clear()
        self._last_checkpoint = time.monotonic()

    async def _after_batch(self, positions: dict[tuple[str, int], int]) -> None:
        self._positions.update(positions)
        if (
            len(self._fresh) >= self._checkpoint_records
            or time.monotonic() - self._last_checkpoint >= self._checkpoint_interval_s
        ):
            self.checkpoint()

    async def _start_at(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """From the checkpoint; partitions without one from the start of the window."""
        assert self._store is not None
        since = None if self.window_ms is None else max(0, _now_ms() - self.window_ms)
        await seek_from(self._store, consumer, tps, since)

    def claim(self, key: bytes) -> _Claim:
        """Hold ``key`` exclusively (``async with seen.claim(key) as already:``); yields whether
        it was already accepted.

        Concurrent claims of one key queue up, so a request racing its twin sees the twin's
        outcome instead of both writing an event."""
        return _Claim(self._inflight, key, self.__contains__)


class _Claim:
    """:meth:`SeenSet.claim`: a class, not a generator-based context manager (measured: 4.5 us
    instead of 6.6 us a claim, its SQLite lookup included)."""

    __slots__ = ("_inflight", "_key", "_seen")

    def __init__(
        self,
        inflight: dict[bytes, tuple[asyncio.Lock, int]],
        key: bytes,
        seen: Callable[[bytes], bool],
    ) -> None:
        self._inflight, self._key, self._seen = inflight, key, seen

    async def __aenter__(self) -> bool:
        lock, holders = self._inflight.get(self._key) or (asyncio.Lock(), 0)
        self._inflight[self._key] = (lock, holders + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise
        try:
            return self._seen(self._key)
        except BaseException:
            lock.release()
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._inflight[self._key][0].release()
        self._leave()

    def _leave(self) -> None:
        lock, holders = self._inflight[self._key]
        if holders == 1:
            del self._inflight[self._key]
        else:
            self._inflight[self._key] = (lock, holders - 1)
