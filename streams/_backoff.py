"""Capped exponential back-off with jitter, for loops that retry against the cluster.

Also what makes an aiokafka consumer back off while the cluster is away. aiokafka (0.14) has no
reconnect back-off: ``retry_backoff_ms`` spaces coordinator, offset and fetch retries, but when
a partition has no known leader (a broker shutting down says so) its fetcher asks for a metadata
refresh on every turn, and a refresh against a broker that refuses connections fails at once:
a busy loop of connection attempts. :func:`back_off_metadata` spaces failed refreshes.

:func:`learn_topics_together` makes an offset lookup (``end_offsets``, ``beginning_offsets``,
``offsets_for_times``) learn all its topics in one refresh. aiokafka learns an unknown topic per retry, one at a time,
each retry after ``retry_backoff_ms``: a lookup over 35 new topics took 8.9 s, not 0.1 s.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

#: Jitter has its own generator: drawing from the global ``random`` would disturb code that seeds
#: or checks it (hypothesis refuses a global random state that moves under its draws).
_JITTER = random.Random()

#: Passed to every long-lived AIOKafkaConsumer: retries are spaced, not immediate.
CONSUMER_BACKOFF: dict[str, Any] = {"retry_backoff_ms": 250}


class Backoff:
    """Delays that double from ``first_s`` up to ``cap_s``, each drawn from its upper half."""

    def __init__(
        self,
        first_s: float = 0.1,
        cap_s: float = 5.0,
        rand: Callable[[], float] = _JITTER.random,
    ) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self._rand = rand
        self._failures = 0

    def next(self) -> float:
        """The delay before the next try (one failure more)."""
        ceiling = min(self._cap_s, self._first_s * float(2 ** min(self._failures, 32)))
        self._failures += 1
        return ceiling * (0.5 + self._rand() / 2)

    def reset(self) -> None:
        """A try succeeded: the next failure starts from ``first_s`` again."""
        self._failures = 0


def back_off_metadata(
    consumer: Any,
    first_s: float = 0.1,
    cap_s: float = 5.0,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """After a failed metadata refresh, wait (capped, jittered, growing) before the next one.

    Wraps the refresh of the consumer's aiokafka client (a private method: aiokafka offers no
    option for this); every caller waits on the same refresh, so all of them back off.
    """
    client = consumer._client
    refresh: Callable[[Any, Any], Awaitable[bool]] = client._metadata_update
    backoff = Backoff(first_s, cap_s)
    failed = False

    async def spaced(cluster: Any, topics: Any) -> bool:
        nonlocal failed
        if failed:
            await sleep(backoff.next())
        ok = await refresh(cluster, topics)
        failed = not ok
        if ok:
            backoff.reset()
        return ok

    client._metadata_update = spaced


def learn_topics_together(consumer: Any) -> None:
    """Before each offset lookup, add its unknown topics to the client's metadata in one refresh."""
    client = consumer._client

    def learning(lookup: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def lookup_known(partitions: Any) -> Any:
            topics = {tp.topic for tp in partitions}
            if not topics <= client._topics:
                await client.set_topics(client._topics | topics)
            return await lookup(partitions)

        return lookup_known

    for name in ("end_offsets", "beginning_offsets", "offsets_for_times"):
        setattr(consumer, name, learning(getattr(consumer, name)))
