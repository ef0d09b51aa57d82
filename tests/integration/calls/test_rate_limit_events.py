"""A provider's 429 is reported as ``integration.rate_limit_changed``: once when the service is
throttled (however many 429s arrive during the pause) and once when the pause is over."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from connectors.registry import build
from connectors.resilience import BreakerPolicy, RateLimit
from connectors.resilience._ratelimit import THROTTLE_S
from connectors.settings import ServiceSettings
from streams.codec import Codec
from streams.events.health import RateLimitChanged
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._support import (
    TopicReader,
    publish,
    request,
    running_worker,
    terminal,
    worker_settings,
)
from tests.integration.chaos._kit import provider

pytestmark = pytest.mark.integration

#: calls published at once: all are at the provider together when it answers 429
CALLS = 6
RATE = 50.0


class Throttling:
    """Holds the first :data:`CALLS` requests until all are there (at most 20 s), answers each
    with 429, then answers 200 to everything; records when each 429 and each 200 was sent."""

    def __init__(self, retry_after: str | None) -> None:
        self.retry_after = retry_after
        self.held: list[asyncio.Future[None]] = []
        self.throttled_at: list[float] = []
        self.served_at: list[float] = []

    async def answer(self, req: web.Request) -> web.Response:
        if req.path != "/chat":  # the worker's health checks
            return web.json_response({"ok": True})
        await req.read()
        if len(self.throttled_at) + len(self.held) >= CALLS:
            self.served_at.append(time.monotonic())
            return web.json_response({"ok": True})
        arrived = asyncio.get_running_loop().create_future()
        self.held.append(arrived)
        if len(self.held) == CALLS:
            for waiting in self.held:
                if not waiting.done():
                    waiting.set_result(None)
        await asyncio.wait_for(asyncio.shield(arrived), 20)
        self.throttled_at.append(time.monotonic())
        headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
        return web.json_response({"error": "slow down"}, status=429, headers=headers)


@pytest.mark.parametrize("retry_after", ["2", None])
async def test_a_429_storm_writes_one_throttle_and_one_lift(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, retry_after: str | None
) -> None:
    throttling = Throttling(retry_after)
    reqs = [request("svc", payload='{"q": 1}') for _ in range(CALLS)]
    async with provider(throttling.answer) as url:
        service = ServiceSettings(
            name="svc", kind="http", base_url=url, rate_limit=RateLimit(rate=RATE, burst=CALLS)
        )
        settings = worker_settings(
            catalogue,
            services=(service,),
            delays_s=(0.2, 0.2, 0.2),
            breaker=BreakerPolicy(minimum_calls=1000),  # 429s must not open the circuit here
        )
        await publish(kafka_settings, codec, catalogue, reqs)
        async with (
            running_worker(kafka_settings, codec, catalogue, settings, {"svc": build(service)}),
            TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
            TopicReader(kafka_settings, codec, catalogue.name("integration.health")) as health,
        ):
            await results.wait_for(lambda r: len(terminal(r)) >= CALLS, timeout=60)
            await health.wait_for(lambda r: len(r.of("integration.rate_limit_changed")) >= 2)
            await asyncio.sleep(1)  # a third change would show up now
            await health.poll()
    assert {e.call_id for e in results.of("call.succeeded")} == {r.call_id for r in reqs}
    throttled = [e for e in results.of("call.failed") if e.error_class == "ProviderThrottledError"]
    assert len(throttled) == CALLS == len(throttling.throttled_at)
    changes: list[RateLimitChanged] = health.of("integration.rate_limit_changed")
    assert [(c.service, c.limit_per_second, c.previous_limit_per_second) for c in changes] == [
        ("svc", 0.0, RATE),  # throttled: one change for the whole storm of 429s
        ("svc", RATE, 0.0),  # lifted, by the first call after the pause
    ]
    pause = float(retry_after) if retry_after else THROTTLE_S
    assert changes[0].reason == (
        f"429 Retry-After: {pause:g} s"
        if retry_after
        else f"429 without Retry-After: paused {pause:g} s"
    )
    assert changes[1].reason == "throttle lifted"
    # the service was paused: nothing reached it before the pause that began with the first 429
    # was over (a loaded machine can only make the retries later)
    assert min(throttling.served_at) - min(throttling.throttled_at) >= pause * 0.95
