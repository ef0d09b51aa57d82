"""Long-poll fetches for consumers that mostly wait: an idle follower costs next to nothing.

The broker answers a fetch as soon as ``fetch_min_bytes`` (1) is there, so a long
``fetch_max_wait_ms`` adds no latency when records arrive; it only spaces out the empty fetches of
an idle consumer (one round trip per wait instead of two a second). aiokafka's fetch routine also
wakes every ``consumer_timeout_ms`` (200 ms by default) to look for work it is told about anyway
(seeks, consumed records and finished fetches wake it at once), and a ``getmany`` timeout only
paces the caller's loop: both are raised to the same long wait.

The catch: the broker answers the requests of one connection in order, so an offset lookup
(``end_offsets``, ``offsets_for_times``) sent while a long poll is parked waits behind it. A
consumer therefore starts with the ordinary short wait, does its lookups and seeks, and switches
to the long poll with :func:`long_poll` once it only follows.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from streams._aiokafka_compat import set_fetch_max_wait

#: How long an idle fetch is parked at the broker (and an idle fetch routine or getmany sleeps).
LONG_POLL_MS = 5_000


def long_poll(consumer: AIOKafkaConsumer, wait_ms: int = LONG_POLL_MS) -> None:
    """From the next fetch on, park empty fetches at the broker for ``wait_ms``.

    aiokafka has no public setter for the wait: :func:`streams._aiokafka_compat.set_fetch_max_wait`
    is the one place that reaches into it (pinned by tests/unit/test_aiokafka_compat.py)."""
    set_fetch_max_wait(consumer, wait_ms)
