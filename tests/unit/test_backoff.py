"""Back-off while the cluster is away: growing, capped, jittered delays; spaced metadata refreshes."""

from __future__ import annotations

from typing import Any

from streams._backoff import Backoff, back_off_metadata


def test_delays_double_up_to_the_cap_each_in_its_upper_half() -> None:
    lowest = Backoff(first_s=0.1, cap_s=1.0, rand=lambda: 0.0)
    highest = Backoff(first_s=0.1, cap_s=1.0, rand=lambda: 1.0)
    assert [round(lowest.next(), 3) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [round(highest.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_success_starts_the_delays_over() -> None:
    backoff = Backoff(first_s=0.1, cap_s=1.0, rand=lambda: 1.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 0.1


class _Client:
    def __init__(self, results: list[bool]) -> None:
        self.results = results
        self.calls = 0

    async def _metadata_update(self, cluster: Any, topics: Any) -> bool:
        self.calls += 1
        return self.results.pop(0)


class _Consumer:
    def __init__(self, client: _Client) -> None:
        self._client = client


async def test_failed_metadata_refreshes_are_spaced_and_a_success_resets_them() -> None:
    client = _Client([False, False, False, True, False])
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    back_off_metadata(_Consumer(client), first_s=0.1, cap_s=0.3, sleep=sleep)
    results = [await client._metadata_update(None, None) for _ in range(5)]
    assert results == [False, False, False, True, False]
    assert client.calls == 5
    # no wait before the first try; then growing waits after each failure; none after a success
    assert len(slept) == 3
    assert 0.05 <= slept[0] <= 0.1
    assert 0.1 <= slept[1] <= 0.2
    assert 0.15 <= slept[2] <= 0.3  # capped


async def test_the_aiokafka_internal_it_wraps_is_there() -> None:
    """Pins aiokafka's private metadata refresh: an upgrade that renames it fails here."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    original = consumer._client._metadata_update
    back_off_metadata(consumer)
    assert consumer._client._metadata_update is not original
    assert consumer._client._metadata_update.__name__ == "spaced"
    await consumer.stop()
