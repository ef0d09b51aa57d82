"""Agent decisions as data: what a record was (:class:`Source`) and what to write (:class:`Output`).

Decision code returns outputs instead of writing them, so it runs in unit tests without Kafka and
the runtime decides how to write (transactionally with the source offset, under exactly-once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.events import Event


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
