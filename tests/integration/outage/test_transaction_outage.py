"""``Publisher.transaction()`` when the broker dies with transactions open: every step is bounded.

aiokafka's ``commit_transaction()`` and ``abort_transaction()`` wait for the transaction
coordinator, which with the cluster gone they look for in an endless loop: the context manager
hung for as long as the broker was down, and so did a caller's shutdown. One broker, killed while
three publishers each hold an open transaction: one commits, one aborts on the caller's error, one
aborts after a write that failed inside it (all at once). Each ends with our error within the publisher's bound
(twice ``request_timeout_ms``), and every publisher closes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.errors import KafkaUnavailableError, WriteOutcomeUnknownError
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._events import call_requested
from tests.integration.outage._broker import own_broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: a hang guard, not a speed assertion: the bound under test is 2 x 3 s
_GUARD_S = 90.0


class _CallerGivesUpError(Exception):
    """The caller's own error inside a transaction."""


async def test_transactions_open_when_the_broker_dies_end_bounded_and_publishers_close(
    tmp_path: Path, codec: Codec, catalogue: Catalogue
) -> None:
    async with own_broker(tmp_path, catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, request_timeout_ms=3_000, linger_ms=0)
        committer, aborter, writer = (
            Publisher(kafka, codec, catalogue, transactional_id=f"{catalogue.prefix}{name}")
            for name in ("commit", "abort", "write")
        )
        publishers = (committer, aborter, writer)
        for publisher in publishers:
            await publisher.start(wait=False)  # connects in the background
        try:
            for publisher in publishers:  # each has its producer id and coordinator now
                await _first_transaction(publisher)
            opened = [asyncio.Event() for _ in publishers]
            killed = asyncio.Event()
            killed_at: list[float] = []

            async def open_then(
                publisher: Publisher, index: int, then: Callable[[], Awaitable[None]]
            ) -> None:
                """A transaction with one acknowledged record, open until the broker is dead;
                then ``then`` (nothing: the block ends, so it commits)."""
                async with publisher.transaction():
                    await publisher.publish(call_requested(index))
                    opened[index].set()
                    await killed.wait()
                    await then()

            async def nothing() -> None:
                pass

            async def give_up() -> None:
                raise _CallerGivesUpError("the caller gives up")

            async def write_more() -> None:
                await writer.publish(call_requested(11))  # no broker: it fails

            async def commit() -> float:
                with pytest.raises(WriteOutcomeUnknownError) as unknown:
                    await open_then(committer, 0, nothing)
                assert "may be committed" in str(unknown.value), unknown.value
                return time.monotonic() - killed_at[0]

            async def abort() -> float:
                with pytest.raises(_CallerGivesUpError):
                    await open_then(aborter, 1, give_up)
                return time.monotonic() - killed_at[0]

            async def write() -> float:
                with pytest.raises(KafkaUnavailableError) as failed:
                    await open_then(writer, 2, write_more)
                assert "publishing" in str(failed.value), failed.value
                return time.monotonic() - killed_at[0]

            async def kill() -> None:
                for event in opened:
                    await event.wait()
                await broker.kill(signal.SIGKILL)
                killed_at.append(time.monotonic())
                killed.set()

            async with asyncio.timeout(_GUARD_S):
                *seconds, _ = await asyncio.gather(commit(), abort(), write(), kill())
            elapsed = dict(zip(("commit", "abort", "write"), seconds, strict=True))
            print("seconds to the error, broker dead:", elapsed)
            assert writer.rebuilds == 1  # the failed write retired its producer
            assert aborter.rebuilds == 1  # the abort got no answer: its producer is retired
            assert committer.rebuilds == 1
            assert committer.problem() is not None
            # a publisher whose producer is being rebuilt refuses a transaction at once
            with pytest.raises(KafkaUnavailableError) as refused:
                async with committer.transaction():
                    pytest.fail("a transaction began without a producer")
            assert not isinstance(refused.value, WriteOutcomeUnknownError)
        finally:
            async with asyncio.timeout(_GUARD_S):  # closing always completes, broker or not
                for publisher in publishers:
                    await publisher.stop()


async def _first_transaction(publisher: Publisher) -> None:
    """One committed transaction; a broker that just started may need a few tries."""
    async with asyncio.timeout(120):
        while True:
            try:
                async with publisher.transaction():
                    await publisher.publish(call_requested(0))
            except KafkaUnavailableError:
                await asyncio.sleep(0.5)
                continue
            return
