"""A writer that stops waiting for a batch's acknowledgements: the records' later failure (the
withdrawal) is expected, so asyncio must not report a "_GatheringFuture exception was never
retrieved" (seen in the Faust worker-kill test, logged by infra.stack's loop handler)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any, cast

from streams.codec import Codec
from streams.errors import KafkaUnavailableError
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue


async def test_a_cancelled_wait_leaves_no_unretrieved_failure() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    publisher = Publisher(
        KafkaSettings(bootstrap="localhost:9"), cast(Codec, None), cast(Catalogue, None)
    )
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    waiter = asyncio.create_task(publisher.acknowledged(futures))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    for future in futures:  # what the retired producer does to the withdrawn records
        future.set_exception(KafkaUnavailableError("not written: withdrawn"))
    await asyncio.sleep(0.01)  # the gathering future sees its children fail
    del waiter, futures
    gc.collect()
    await asyncio.sleep(0.01)
    assert not reported, [c.get("message") for c in reported]
