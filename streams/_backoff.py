"""Capped exponential back-off with jitter, for loops that retry against the cluster.

Also the aiokafka options that make a consumer back off while the cluster is away. aiokafka has
no reconnect back-off of its own (a refused connection is retried at once); what it has is
``retry_backoff_ms`` (coordinator, offset and fetch retries) and the metadata refresh interval.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

#: Passed to every long-lived AIOKafkaConsumer: retries are spaced, not immediate.
CONSUMER_BACKOFF: dict[str, Any] = {"retry_backoff_ms": 500}


class Backoff:
    """Delays that double from ``first_s`` up to ``cap_s``, each drawn from its upper half."""

    def __init__(
        self,
        first_s: float = 0.1,
        cap_s: float = 5.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self._rand = rand
        self._failures = 0

    def next(self) -> float:
        """The delay before the next try (one failure more)."""
        ceiling = min(self._cap_s, self._first_s * 2 ** min(self._failures, 32))
        self._failures += 1
        return ceiling * (0.5 + self._rand() / 2)

    def reset(self) -> None:
        """A try succeeded: the next failure starts from ``first_s`` again."""
        self._failures = 0
