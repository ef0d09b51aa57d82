"""``SeenSet.claim``: one holder per key at a time, twins queue and see the first one's outcome."""

from __future__ import annotations

import asyncio

import pytest

from connectors.webhooks._seen import SeenSet
from streams.settings import KafkaSettings


def _seen() -> SeenSet:
    # never started: membership is the in-memory part only, all a claim needs
    return SeenSet(KafkaSettings(bootstrap="127.0.0.1:9"), "webhooks.inbound")


async def test_a_twin_waits_for_the_first_claim_and_sees_its_key_accepted() -> None:
    seen = _seen()
    order: list[str] = []

    async def first() -> None:
        async with seen.claim(b"k") as already:
            order.append(f"first {already}")
            await asyncio.sleep(0.01)
            seen.add(b"k")

    async def twin() -> None:
        await asyncio.sleep(0)  # after the first holds it
        async with seen.claim(b"k") as already:
            order.append(f"twin {already}")

    await asyncio.gather(first(), twin())
    assert order == ["first False", "twin True"]
    assert seen._inflight == {}


async def test_claims_of_other_keys_do_not_wait() -> None:
    seen = _seen()
    async with seen.claim(b"a") as a, seen.claim(b"b") as b:
        assert (a, b) == (False, False)
        assert set(seen._inflight) == {b"a", b"b"}
    assert seen._inflight == {}


async def test_a_failed_lookup_or_a_cancelled_wait_leaves_no_claim_behind() -> None:
    seen = _seen()

    def broken(_: bytes) -> bool:
        raise OSError("disk gone")

    seen.__contains__ = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk gone"):
        async with seen.claim(b"k"):
            pass
    assert seen._inflight == {}
    del seen.__contains__

    async with seen.claim(b"k"):
        waiting = asyncio.ensure_future(seen.claim(b"k").__aenter__())
        await asyncio.sleep(0)
        assert seen._inflight[b"k"][1] == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert seen._inflight[b"k"][1] == 1
    assert seen._inflight == {}
