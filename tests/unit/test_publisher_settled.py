"""``_settled``: how a publish waits for its acknowledgement, bounded, never cancelling it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.producer import _all_settled, _settled


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


async def test_several_futures_settle_when_all_are_done_or_one_failed() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[Any] = loop.create_future()
    second: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(first.set_result, "ack")
    loop.call_later(0.01, second.set_result, "ack")
    assert await _all_settled([first, second], 10.0)
    assert second.done()  # waited for the later one too
    pending: asyncio.Future[Any] = loop.create_future()
    failed: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(failed.set_exception, OSError("refused"))
    assert await _all_settled([pending, failed], 10.0)  # a failure ends the wait at once
    assert not pending.done()  # and nothing was cancelled
    assert not await _all_settled([pending, first], 0.01)
    assert not pending.done()
