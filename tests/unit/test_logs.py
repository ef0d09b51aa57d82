"""The logging set-up: repeated client errors are rate-limited, expected states go to debug."""

from __future__ import annotations

import logging

from infra.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_same_message_passes_once_per_window_then_says_how_often_it_repeated() -> None:
    clock = Clock()
    repeat = RepeatFilter(every_s=30, clock=clock)
    template = "Unable connect to node with id %s: %s"
    passed = []
    for _ in range(650):  # what one second of a broker outage looked like in `make run`
        record = _record("aiokafka.client", template, logging.ERROR, 1, "refused")
        if repeat.filter(record):
            passed.append(record)
        clock.now += 0.1  # 65 s in all
    assert len(passed) == 3  # t=0, t=30, t=60
    assert passed[0].getMessage() == "Unable connect to node with id 1: refused"
    assert passed[1].getMessage().endswith("(repeated 299 times in the last 30 s)")
    assert passed[1].getMessage().startswith("Unable connect to node with id 1: refused")


def test_different_messages_and_info_records_are_not_held_back() -> None:
    repeat = RepeatFilter(every_s=30, clock=Clock())
    assert repeat.filter(_record("aiokafka.client", "Unable to update metadata from %s"))
    assert repeat.filter(_record("aiokafka.client", "Unable connect to %s"))
    assert repeat.filter(_record("agents.worker", "Unable connect to %s"))
    for _ in range(5):
        assert repeat.filter(_record("agents.worker", "claimed %s", logging.INFO))


def test_expected_transient_client_states_are_debug() -> None:
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        repeat = RepeatFilter(every_s=30, clock=Clock())
        record = _record(
            "aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"
        )
        assert not repeat.filter(record)
        assert record.levelname == "DEBUG"
    finally:
        logger.setLevel(before)
