"""The one place Backbone touches aiokafka internals; tests/unit/test_aiokafka_compat.py pins each.

Each function says why no public API does the job. An aiokafka upgrade that changes one of these
fails those tests, here, instead of breaking producers in production.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

#: the aiokafka releases whose internals the functions below were checked against
CHECKED_VERSIONS = ("0.14.",)


def fail_buffered(producer: AIOKafkaProducer, exc: BaseException) -> None:
    """Fail every record the producer still holds (buffered or awaiting an answer) with ``exc``.

    Synchronous on purpose: once it returns, no record handed to this producer can be acknowledged
    to its caller, and no buffered batch is sent any more: the accumulator refuses new batches,
    its queues are emptied, and the sender task is cancelled before it can drain them. aiokafka
    has no public "abandon" (aiokafka#1101): ``stop()`` waits for every batch, forever with the
    cluster gone. A produce request already on the wire may still be written by the broker.
    """
    accumulator = producer._message_accumulator
    batches = [b for queue in accumulator._batches.values() for b in queue]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(exc)
    accumulator._batches.clear()
    for batch in batches:  # nobody awaits a batch's own futures: mark their failure as seen
        for future in (batch.future, batch._drain_waiter):
            if future.done() and not future.cancelled():
                future.exception()
    task = producer._sender.sender_task
    if task is not None:
        task.cancel()


def sender_failed(producer: AIOKafkaProducer) -> bool:
    """True when the producer's background sender ended (e.g. on OutOfOrderSequenceNumber, which
    aiokafka 0.14 raises out of its sender routine): such a producer never delivers again."""
    task = producer._sender.sender_task
    return task is not None and task.done()


async def close_producer(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """Stop a producer, flushing what the cluster will still take within ``timeout_s``.

    With the cluster gone, ``AIOKafkaProducer.stop()`` waits forever for batches it can never
    deliver (aiokafka#1101). Past the timeout those batches are abandoned (their callers already
    got a timeout, never a success) and the sender and connections are closed directly.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
    if done:
        stopping.result()
        return
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopping
    producer._closed = True  # refuse late sends; also tells __del__ it was closed
    await producer._sender.close()  # no public way to abandon buffered batches
    await producer.client.close()
