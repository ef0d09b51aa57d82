"""The stage's commit bookkeeping: an offset is committable only when every record before it is done."""

from __future__ import annotations

from aiokafka import TopicPartition

from agents.runtime import _Progress

TP = TopicPartition("calls.lane.normal", 0)
OTHER = TopicPartition("calls.lane.normal", 1)


def test_nothing_is_committable_past_a_batch_still_running() -> None:
    progress = _Progress()
    first = progress.add(TP, 0, 10)
    second = progress.add(TP, 10, 20)
    second.done = True  # the later batch finished first
    assert progress.committable() == {}
    first.done = True
    assert progress.committable() == {TP: 20}
    assert progress.committable() == {}  # committed once, not again


def test_partitions_advance_independently_and_can_be_asked_for_alone() -> None:
    progress = _Progress()
    progress.add(TP, 0, 5).done = True
    progress.add(OTHER, 7, 9).done = True
    assert progress.committable(only=[OTHER]) == {OTHER: 9}
    assert progress.committable() == {TP: 5}


def test_rewind_drops_the_failed_batch_and_everything_after_it() -> None:
    progress = _Progress()
    progress.add(TP, 0, 10).done = True
    failed = progress.add(TP, 10, 20)
    later = progress.add(TP, 20, 30)
    progress.rewind(TP, failed.first)
    later.done = True  # finishing after the rewind changes nothing: it is read again
    assert progress.committable() == {TP: 10}
    again = progress.add(TP, 10, 30)
    again.done = True
    assert progress.committable() == {TP: 30}


def test_revoked_partitions_are_forgotten() -> None:
    progress = _Progress()
    progress.add(TP, 0, 10).done = True
    progress.forget([TP])
    assert progress.committable() == {}
