"""The supervisor: transient errors restart a loop with back-off, others are reported once, and
closing never re-raises a loop's old error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.errors import KafkaUnavailableError
from streams.supervise import FATAL, Supervisor, is_transient, retrying


def test_what_counts_as_transient() -> None:
    assert is_transient(KafkaUnavailableError("down"))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError("bug"))


async def test_a_transient_error_restarts_the_loop() -> None:
    runs = 0
    done = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise KafkaUnavailableError("broker away")
        done.set()
        await asyncio.Event().wait()

    supervisor = Supervisor("test", backoff_cap_s=0.05)
    supervisor.start("loop", loop)
    await asyncio.wait_for(done.wait(), 30)
    assert supervisor.restarts("loop") == 2
    assert "broker away" in supervisor.problems()["loop"]
    supervisor.mark_ok("loop")
    assert supervisor.problems() == {}
    await supervisor.close()


async def test_a_loop_that_dies_for_good_is_reported_once_and_close_does_not_raise() -> None:
    reported: list[tuple[str, BaseException]] = []

    async def loop() -> None:
        raise ValueError("a bug")

    supervisor = Supervisor("svc", on_fatal=lambda name, exc: reported.append((name, exc)))
    supervisor.start("loop", loop)
    for _ in range(100):
        if reported:
            break
        await asyncio.sleep(0.01)
    assert [name for name, _ in reported] == ["svc: loop"]
    assert "died" in supervisor.problems()["loop"]
    await supervisor.close()  # the old ValueError is not raised here: teardown goes on


async def test_without_a_handler_a_death_goes_to_the_event_loop_marked_fatal() -> None:
    contexts: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: contexts.append(context))
    try:

        async def dies() -> None:
            raise RuntimeError("gone")

        supervisor = Supervisor("svc")
        supervisor.start("loop", dies)
        for _ in range(100):
            if contexts:
                break
            await asyncio.sleep(0.01)
        await supervisor.close()
    finally:
        loop.set_exception_handler(None)
    assert contexts[0][FATAL] is True
    assert "svc: loop died for good: RuntimeError: gone" in contexts[0]["message"]


async def test_retrying_repeats_a_step_until_it_succeeds_and_raises_bugs() -> None:
    attempts = 0

    async def step() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise KafkaUnavailableError("not yet")

    await retrying(step, "step", cap_s=0.01)
    assert attempts == 3

    async def bug() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):  # a bug is not retried
        await retrying(bug, "bug", cap_s=0.01)
