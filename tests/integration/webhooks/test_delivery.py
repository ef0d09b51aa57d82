"""Outbound deliveries through the real broker: signing, retries, 410, dead letters, recovery."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import standardwebhooks

from agents.webhooks.recovery import attempts, recover
from streams.codec import Codec
from streams.events import event_class
from streams.events.common import DeadLetterReason
from streams.events.webhooks import (
    WebhookDelivered,
    WebhookDeliveryAttempted,
    WebhookDeliveryFailed,
    WebhookEndpointDisabled,
)
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import read_all, wait_dead_letters, wait_until
from tests.integration.webhooks._outbound import admin_only, delivery_settings, running_service
from tests.integration.webhooks._receiver import receiver

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_matching_events_are_delivered_signed(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    succeeded = event_class("call.succeeded").model_validate(
        {
            "call_id": "c-1",
            "service": "search",
            "operation": "query",
            "status": 200,
            "latency_ms": 12.5,
            "attempt": 1,
            "idempotency_key": "k-1",
        }
    )
    failed = event_class("call.failed").model_validate(
        {
            "call_id": "c-2",
            "service": "search",
            "operation": "query",
            "error_class": "X",
            "message": "m",
            "retriable": False,
            "attempt": 1,
            "idempotency_key": "k-2",
        }
    )
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, secret = await out.admin.register(
            bird.url, event_types=["call.succeeded"], headers={"X-Partner": "acme"}
        )
        settings = delivery_settings(source_topics=("calls.results",), runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings, fanout=True) as svc:
            await out.publisher.publish_many([failed, succeeded])
            [hit] = await bird.wait_for(1)
            await asyncio.sleep(0.5)  # nothing else may arrive
            await wait_until(lambda: svc.worker.delivered == 1)
    assert len(bird.hits) == 1
    assert hit.headers["X-Partner"] == "acme"
    body = standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    assert body["type"] == "call.succeeded"
    assert body["data"]["call_id"] == "c-1"
    history = await attempts(kafka_settings, codec, catalogue, endpoint_id=endpoint.endpoint_id)
    kinds = [type(e) for e, _ in history]
    assert kinds == [WebhookDeliveryAttempted, WebhookDelivered]


@pytest.mark.parametrize("runtime", ["faust", "aiokafka"])
async def test_retries_follow_the_schedule_with_stable_id_and_fresh_timestamps(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    delays = (1.0, 2.0)
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        bird.script = [(500, {}), (503, {}), (200, {})]
        endpoint, secret = await out.admin.register(bird.url)
        settings = delivery_settings(retry_delays_s=delays, runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            request = await out.request(endpoint.endpoint_id)
            hits = await bird.wait_for(3, timeout=30)
            await wait_until(lambda: svc.worker.delivered == 1)
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    for gap, delay in zip(gaps, delays, strict=True):
        # not early (10 % for the timer); a loaded box may add to a gap (the broker electing
        # new topics' leaders late once added 4-5 s), so the upper bound is loose
        assert 0.9 * delay <= gap < delay + 10.0, f"gap {gap:.3f} s for a {delay} s delay"
    assert {h.headers["webhook-id"] for h in hits} == {request.delivery_id}
    assert len({h.headers["webhook-timestamp"] for h in hits}) == 3
    for hit in hits:
        standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    history = await attempts(kafka_settings, codec, catalogue, endpoint_id=endpoint.endpoint_id)
    outcomes = [type(e).__name__ for e, _ in history if not isinstance(e, WebhookDeliveryAttempted)]
    assert outcomes == ["WebhookDeliveryFailed", "WebhookDeliveryFailed", "WebhookDelivered"]


async def test_retry_after_is_honoured(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        bird.script = [(429, {"Retry-After": "2"}), (200, {})]
        endpoint, _ = await out.admin.register(bird.url)
        async with running_service(
            kafka_settings, codec, catalogue, delivery_settings(retry_delays_s=(0.2,))
        ):
            await out.request(endpoint.endpoint_id)
            first, second = await bird.wait_for(2)
    # not before Retry-After (the schedule alone would retry after 0.2 s); the upper bound only
    # catches a retry that waited on something else, with room for a busy broker (new topics'
    # leaders were once elected 4-5 s late under a full `make test`, and the retry with them)
    assert 1.8 <= second.at - first.at <= 15


@pytest.mark.parametrize("runtime", ["faust", "aiokafka"])
async def test_exhausted_delivery_is_dead_lettered_with_its_envelope_then_recovered(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        bird.script = [(500, {})]
        endpoint, secret = await out.admin.register(bird.url)
        settings = delivery_settings(retry_delays_s=(0.2, 0.2), runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            request = await out.request(endpoint.endpoint_id, payload='{"n": 7}')
            await bird.wait_for(3)
            [dead] = await wait_dead_letters(kafka_settings, codec, catalogue, 1)
            assert dead.delivery_id == request.delivery_id
            assert dead.request.payload == '{"n": 7}'
            assert dead.failure.reason is DeadLetterReason.EXHAUSTED
            assert dead.failure.attempts == 3
            assert dead.failure.error_class == "HTTP500"
            assert dead.failure.original_topic == catalogue.name("webhooks.deliveries.retry.2")
            assert dead.failure.first_failure_at <= dead.failure.last_failure_at
            assert dead.failure.service == endpoint.endpoint_id
            # the receiver is fixed; the operator re-sends the window
            bird.script = [(200, {})]
            since_ms = int((time.time() - 60) * 1000)
            done = await recover(
                kafka_settings,
                codec,
                catalogue,
                out.publisher,
                endpoint_id=endpoint.endpoint_id,
                since_ms=since_ms,
            )
            assert [r.delivery_id for r in done] == [request.delivery_id]
            hits = await bird.wait_for(4)
            await wait_until(lambda: svc.worker.delivered == 1)
    assert hits[3].headers["webhook-id"] == request.delivery_id
    standardwebhooks.Webhook(secret).verify(hits[3].body, hits[3].headers)
    assert len(bird.hits) == 4


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_gone_disables_the_endpoint(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        bird.script = [(410, {})]
        endpoint, _ = await out.admin.register(bird.url)
        settings = delivery_settings(runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            await out.request(endpoint.endpoint_id)
            await bird.wait_for(1)
            await wait_until(lambda: svc.registry.view.endpoints[endpoint.endpoint_id].disabled)
            await out.request(endpoint.endpoint_id)  # a later delivery is not attempted
            await wait_dead_letters(kafka_settings, codec, catalogue, 2)
    assert len(bird.hits) == 1
    rows = await read_all(kafka_settings, codec, catalogue.name("webhooks.endpoints"))
    disabled = [e for _, e, _ in rows if isinstance(e, WebhookEndpointDisabled)]
    assert [(d.endpoint_id, d.reason) for d in disabled] == [(endpoint.endpoint_id, "http_410")]


async def test_endpoint_failing_for_the_configured_period_is_disabled(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        bird.script = [(500, {})]
        endpoint, _ = await out.admin.register(bird.url)
        settings = delivery_settings(retry_delays_s=(0.4,) * 7, disable_after_s=1.0)
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            await out.request(endpoint.endpoint_id)
            await wait_until(lambda: svc.registry.view.endpoints[endpoint.endpoint_id].disabled)
    assert 3 <= len(bird.hits) <= 5  # about 1 s of failures at 0.4 s spacing, then no more
    rows = await read_all(kafka_settings, codec, catalogue.name("webhooks.endpoints"))
    [disabled] = [e for _, e, _ in rows if isinstance(e, WebhookEndpointDisabled)]
    assert disabled.reason.startswith("failing for")


async def test_rotation_signs_with_both_secrets_during_the_grace_period(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, old = await out.admin.register(bird.url)
        async with running_service(kafka_settings, codec, catalogue, delivery_settings()):
            # rotated once the worker runs, with a grace that a loaded machine's first delivery
            # fits in; the second request waits until the grace is over
            rotated = time.monotonic()
            _, new = await out.admin.rotate(endpoint.endpoint_id, grace_s=6.0)
            await out.request(endpoint.endpoint_id)
            [during] = await bird.wait_for(1)
            await asyncio.sleep(max(0.0, rotated + 6.2 - time.monotonic()))
            await out.request(endpoint.endpoint_id)
            _, after = await bird.wait_for(2)
    assert len(during.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split()) == 1
    standardwebhooks.Webhook(new).verify(after.body, after.headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(after.body, after.headers)


async def test_rate_limit_per_endpoint(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    """A token bucket of 5/s (burst 5) lets 15 deliveries through in no less than 2 s: the
    15th permit comes at least (15 - 5) / 5 s after the first. Arrival times at the receiver
    are permit times plus a delay (scheduling, a loaded machine) that can squeeze any gap, so
    the oracle is the whole run's span, not a window of arrivals: span >= 2 s minus the first
    arrival's own delay (up to 1 s tolerated); an unlimited sender takes a fraction of that."""
    slow_n = 15
    async with (
        receiver() as slow,
        receiver() as fast,
        admin_only(kafka_settings, codec, catalogue) as out,
    ):
        limited, _ = await out.admin.register(slow.url, rate_limit_per_second=5)
        free, _ = await out.admin.register(fast.url)
        for i in range(slow_n):  # all queued before the worker starts: it sees them at once
            await out.request(limited.endpoint_id)
            if i < 10:
                await out.request(free.endpoint_id)
        async with running_service(kafka_settings, codec, catalogue, delivery_settings()):
            await fast.wait_for(10)
            await slow.wait_for(slow_n)
    span = slow.hits[-1].at - slow.hits[0].at
    assert span >= (slow_n - 5) / 5 - 1.0, f"{slow_n} deliveries at 5/s took {span:.2f} s"
    # the limit is the endpoint's own: the free endpoint's deliveries do not wait for its permits
    assert fast.hits[-1].at < slow.hits[-1].at, "the free endpoint waited for the limited one"


async def test_ssrf_guard_blocks_loopback_without_allow_list(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with receiver() as canary, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, _ = await out.admin.register(canary.url)
        settings = delivery_settings(allow_networks=(), retry_delays_s=(0.1,))
        async with running_service(kafka_settings, codec, catalogue, settings):
            await out.request(endpoint.endpoint_id)
            [dead] = await wait_dead_letters(kafka_settings, codec, catalogue, 1)
    assert canary.hits == []
    assert dead.failure.error_class == "unsafe_destination"
    rows = await read_all(kafka_settings, codec, catalogue.name("webhooks.attempts"))
    failures = [e for _, e, _ in rows if isinstance(e, WebhookDeliveryFailed)]
    assert len(failures) == 2
    assert all("loopback" in f.message for f in failures)


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_undecodable_request_does_not_stall_the_partition(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    from aiokafka import AIOKafkaProducer

    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, _ = await out.admin.register(bird.url)
        raw = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap)
        await raw.start()
        try:
            await raw.send_and_wait(
                catalogue.name("webhooks.deliveries"),
                b"\x00garbage",
                key=endpoint.endpoint_id.encode(),  # same key: same partition
            )
        finally:
            await raw.stop()
        settings = delivery_settings(runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            await out.request(endpoint.endpoint_id)
            await bird.wait_for(1)
            await wait_until(lambda: svc.worker.undecodable == 1)


async def test_replayed_copies_do_not_trigger_deliveries(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    from streams import headers as h

    def succeeded(call_id: str) -> Any:
        return event_class("call.succeeded").model_validate(
            {
                "call_id": call_id,
                "service": "search",
                "operation": "query",
                "status": 200,
                "latency_ms": 1.0,
                "attempt": 1,
                "idempotency_key": call_id,
            }
        )

    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        await out.admin.register(bird.url)
        settings = delivery_settings(source_topics=("calls.results",))
        async with running_service(kafka_settings, codec, catalogue, settings, fanout=True):
            await out.publisher.publish(
                succeeded("replayed"), headers={h.REPLAYED_FROM: b"calls.results/0/0"}
            )
            await out.publisher.publish(succeeded("live"))
            [hit] = await bird.wait_for(1)
            await asyncio.sleep(0.5)
    assert len(bird.hits) == 1
    assert b'"call_id":"live"' in hit.body
