"""Issue 10, item 14: a busy event loop neither makes the gateway acknowledge unwritten events nor
hang it.

A handler that holds the event loop (CPU-heavy work done inline, simulated by a blocking sleep
longer than the gateway's publish timeout) runs while clients post events. Whatever the timing,
the gateway's promise must hold: every 202 is in Kafka exactly once, every 503 is never written
(not even later, when the producer's buffer drains), every 504 (`outcome_unknown`: its produce
request had reached the broker when the hold let the publish timeout pass) is in Kafka at most
once, every request gets an answer, and the gateway is still ready afterwards. No timing is asserted; only the accounting is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors.gateway import GatewayService, GatewaySettings, build_gateway
from streams import Subscriber
from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._events import call_requested_json

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer token-alpha"}
#: How long the busy handler holds the loop: longer than the publish timeout below.
HOLD_S = 6.0
ROUNDS = 2
PER_ROUND = 20
#: Posts of a round start this far apart, so they straddle the hold.
SPREAD_S = 0.5


def _busy_extension(app: web.Application) -> None:
    async def busy(request: web.Request) -> web.Response:
        time.sleep(HOLD_S)  # noqa: ASYNC251  # the point: the loop is held, nothing else runs
        return web.json_response({"held_s": HOLD_S})

    app.router.add_post("/v1/busy", busy)


@pytest.fixture
async def base(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> AsyncIterator[str]:
    settings = GatewaySettings(
        tokens={"alpha": SecretStr("token-alpha")},
        publish_timeout_s=5.0,
        rate_per_s=10_000,
        burst=10_000,
    )
    app = build_gateway(
        settings, kafka_settings, schema_registry, catalogue, extensions=[_busy_extension]
    )
    service = GatewayService(app, "127.0.0.1", 0)
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.bound_port}"
    finally:
        await service.stop()


async def _ready(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        async with http.get(f"{base}/readyz") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.5)
    raise AssertionError("the gateway did not become ready within 90 s")


async def _post(
    http: aiohttp.ClientSession, base: str, call_id: str, after_s: float = 0.0
) -> tuple[str, int]:
    await asyncio.sleep(after_s)
    body: dict[str, Any] = {**call_requested_json(), "call_id": call_id}
    async with http.post(f"{base}/v1/events/call.requested", json=body, headers=AUTH) as response:
        await response.read()
        return call_id, response.status


async def _hold(http: aiohttp.ClientSession, base: str, after_s: float) -> int:
    await asyncio.sleep(after_s)  # the hold lands at a different moment in each round
    async with http.post(f"{base}/v1/busy", headers=AUTH) as response:
        return response.status


async def _recovered(http: aiohttp.ClientSession, base: str) -> str:
    """Post until one event is accepted (after a 503 the gateway is not ready until a write
    succeeds again); returns its call id."""
    deadline = time.monotonic() + 90
    attempt = 0
    while time.monotonic() < deadline:
        call_id, status = await _post(http, base, f"recovered-{attempt}")
        if status == 202:
            return call_id
        assert status == 503, status
        attempt += 1
        await asyncio.sleep(0.5)
    raise AssertionError("the gateway accepted nothing within 90 s after the loop was freed")


async def _written(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> list[str]:
    topics = ["calls.requests"]
    async with Subscriber(kafka, codec, catalogue, topics, None, stop_at_end=True) as sub:
        return [str(getattr(r.event, "call_id", "")) async for r in sub]


async def test_a_held_event_loop_never_acknowledges_an_unwritten_event_nor_hangs(
    base: str, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    answers: list[tuple[str, int]] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await _ready(http, base)
        for round_ in range(ROUNDS):
            # posts spread over the hold: some answered before it, some in flight across it,
            # some sent after it (the test's client shares the loop the handler holds)
            posts = [
                _post(http, base, f"starved-{round_}-{i}", after_s=i * SPREAD_S)
                for i in range(PER_ROUND)
            ]
            async with asyncio.timeout(180):  # nothing hangs
                held = asyncio.ensure_future(_hold(http, base, 1.0 + 0.1 * round_))
                answers += await asyncio.gather(*posts)
                assert await held == 200
        await asyncio.sleep(3.0)  # a refused record still in a buffer would be written by now
        # and the gateway recovers by itself: a new write is acknowledged, then it is ready again
        recovered = await _recovered(http, base)
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200, await response.text()
    assert {status for _, status in answers} <= {202, 503, 504}, answers
    accepted = {call_id for call_id, status in answers if status == 202}
    refused = {call_id for call_id, status in answers if status == 503}
    unknown = {call_id for call_id, status in answers if status == 504}
    written = await _written(kafka_settings, codec, catalogue)
    assert accepted, "no event was accepted at all"
    assert sorted(c for c in written if c in accepted) == sorted(accepted)  # each once
    assert refused.isdisjoint(written), f"503'd events were written: {refused & set(written)}"
    twice = [c for c in unknown if written.count(c) > 1]
    assert not twice, f"504'd events written more than once: {twice}"
    assert set(written) - {recovered} <= accepted | unknown
