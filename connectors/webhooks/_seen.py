"""Replay protection for inbound webhooks: the ids each source has already had accepted.

The set lives in the compacted ``webhooks.seen`` topic (key ``{source}/{webhook-id}``), so it
survives restarts and is shared by every gateway: on start the whole topic is read (keys only, no
decoding) and afterwards it is tailed, so ids accepted by another gateway arrive within moments.

Two identical requests racing inside one gateway are serialised by :meth:`SeenSet.claim`: the
second waits for the first and then sees its outcome. Across gateways a race inside the tailing
lag can still produce a duplicate ``webhook.received``; it carries the same ``webhook_id``, which
consumers deduplicate on (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import ConsumerRecord

from streams.follow import TopicFollower
from streams.settings import KafkaSettings


def seen_key(source: str, webhook_id: str) -> bytes:
    return f"{source}/{webhook_id}".encode()


class SeenSet:
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._keys: set[bytes] = set()
        self._inflight: dict[bytes, tuple[asyncio.Lock, int]] = {}
        self._follower = TopicFollower(kafka, topic, self._apply)

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is not None and record.value is not None:
            self._keys.add(record.key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: bytes) -> None:
        self._keys.add(key)

    async def start(self) -> None:
        """Load every key up to the current end of the topic, then keep following it."""
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    @contextlib.asynccontextmanager
    async def claim(self, key: bytes) -> AsyncIterator[bool]:
        """Hold ``key`` exclusively; yields whether it was already accepted.

        Concurrent claims of one key queue up, so a request racing its twin sees the twin's
        outcome instead of both writing an event."""
        lock, holders = self._inflight.get(key, (asyncio.Lock(), 0))
        self._inflight[key] = (lock, holders + 1)
        try:
            async with lock:
                yield key in self._keys
        finally:
            lock, holders = self._inflight[key]
            if holders == 1:
                del self._inflight[key]
            else:
                self._inflight[key] = (lock, holders - 1)
