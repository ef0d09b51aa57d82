"""``_settled``: how a publish waits for its acknowledgement, bounded, never cancelling it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.producer import _settled


async def test_true_once_the_future_is_done_and_at_once_when_it_already_is() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(future.set_result, "ack")
    assert await _settled(future, 10.0)
    assert await _settled(future, 0.0)
    failed: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(failed.set_exception, OSError("refused"))
    assert await _settled(failed, 10.0)  # settled: the caller reads the failure from it
    with pytest.raises(OSError, match="refused"):
        failed.result()


async def test_false_after_the_budget_and_the_future_left_pending() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    assert not await _settled(future, 0.01)
    assert not future.done()  # never cancelled: the producer still accounts for its batch


async def test_a_caller_that_stops_waiting_does_not_cancel_the_future() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(_settled(future, 10.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not future.done()
