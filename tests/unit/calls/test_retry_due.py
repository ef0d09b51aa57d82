"""Retry-tier records are fetched up to a second early (the stage's head start) and each goes
back to its lane when it is due, never before a record ahead of it (agents._kafka_calls)."""

from __future__ import annotations

import asyncio

from agents._kafka_calls import RETRY_EARLY_S, RETRY_FETCH_WAIT_MS, in_due_order

Due = list[tuple[str, float | None]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def handed_over(
    records: list[tuple[str, float | None]], clock: Clock
) -> list[tuple[float, list[str]]]:
    batches: list[tuple[float, list[str]]] = []

    async def handle(batch: list[tuple[str, float | None]]) -> None:
        batches.append((clock.now, [name for name, _ in batch]))

    asyncio.run(in_due_order(records, lambda r: r[1], handle, clock=clock.time, sleep=clock.sleep))
    return batches


def test_each_record_goes_when_it_is_due_not_when_the_last_of_its_batch_is() -> None:
    clock = Clock()
    records: Due = [("a", 1000.2), ("b", 1000.2), ("c", 1000.7), ("d", None)]
    assert handed_over(records, clock) == [(1000.2, ["a", "b"]), (1000.7, ["c", "d"])]


def test_records_due_already_go_at_once_together() -> None:
    clock = Clock()
    records: Due = [("a", None), ("b", 999.0), ("c", 1000.0)]
    assert handed_over(records, clock) == [(1000.0, ["a", "b", "c"])]
    assert clock.slept == []


def test_a_record_never_overtakes_one_ahead_of_it() -> None:
    clock = Clock()
    records: Due = [("late", 1000.8), ("early", 1000.1)]
    assert handed_over(records, clock) == [(1000.8, ["late", "early"])]


def test_a_parked_partition_resumes_early_enough_for_the_fetch_in_flight() -> None:
    # resumed RETRY_EARLY_S before due, it is fetched once the fetch in flight returns
    assert RETRY_FETCH_WAIT_MS / 1000 <= RETRY_EARLY_S / 2
