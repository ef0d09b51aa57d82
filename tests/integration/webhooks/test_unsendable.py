"""Deliveries that can never be sent or written (issue 10 items 1 and 2).

- Header injection: custom headers are refused at registration (API 400 naming the header, and the
  admin the CLI uses); one stored anyway is ONE fatal failure of that delivery, dead-lettered with
  its reason, never a batch read again forever.
- An event whose webhook body is over the record limit: its delivery is dead-lettered with the
  reason, and fan-out goes on with the next event.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from connectors.webhooks import WebhookSecret
from connectors.webhooks.errors import InvalidHeaderError
from connectors.webhooks.registry import ENDPOINTS_TOPIC, Endpoint, to_event
from streams import headers as h
from streams.codec import Codec
from streams.events.common import DeadLetterReason
from streams.events.research import ResearchStepStarted
from streams.events.webhooks import (
    WebhookDeliveryAttempted,
    WebhookDeliveryDeadLettered,
    WebhookDeliveryFailed,
    WebhookDeliveryRequested,
)
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import (
    dead_letters,
    ingress_settings,
    read_all,
    running_gateway,
    wait_dead_letters,
    wait_until,
)
from tests.integration.webhooks._outbound import admin_only, delivery_settings, running_service
from tests.integration.webhooks._receiver import receiver

pytestmark = pytest.mark.integration

BAD_HEADERS = [
    {"X-Bad": "a\r\nX-Injected: 1"},
    {"X-Bad": "line\nbreak"},
    {"X-Bad": "nul\x00"},
    {"X Bad": "space in the name"},
    {"X-Bad:": "colon in the name"},
    {"": "empty name"},
    {"Bad\r\nName": "v"},
]


async def test_bad_custom_headers_are_refused_at_registration(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with (
        running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _),
        aiohttp.ClientSession(base_url=base) as http,
    ):
        async with http.post(
            "/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com/in", "headers": {"X-Ok": "fine\tvalue"}},
        ) as r:
            assert r.status == 201
            endpoint_id = (await r.json())["endpoint_id"]
        for headers in BAD_HEADERS:
            name = next(iter(headers))
            body = {"url": "https://hooks.example.com/in", "headers": headers}
            async with http.post("/v1/webhook-endpoints", json=body) as r:
                assert r.status == 400, headers
                answer = await r.json()
            # the gateway's one error shape: the field and a message naming the header
            [problem] = answer["error"]["fields"]
            assert problem["field"] == "headers", answer
            assert repr(name[:64]) in problem["message"], answer
            async with http.patch(
                f"/v1/webhook-endpoints/{endpoint_id}", json={"headers": headers}
            ) as r:
                assert r.status == 400, headers
    # the admin the CLI uses applies the same check
    async with admin_only(kafka_settings, codec, catalogue) as out:
        for headers in BAD_HEADERS:
            with pytest.raises(InvalidHeaderError):
                await out.admin.register("https://hooks.example.com/in", headers=headers)


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_an_unsendable_delivery_fails_once_and_others_are_delivered(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        good, _ = await out.admin.register(bird.url)
        # stored as an older version would have stored it: bypassing the registration check
        bad = Endpoint(
            endpoint_id="ep_injected",
            url=bird.url,
            event_types=(),
            headers={"X-Bad": "a\r\nX-Injected: 1"},
            secrets=(WebhookSecret.generate(),),
        )
        await out.publisher.publish(to_event(bad, registered=True), topic=ENDPOINTS_TOPIC)
        settings = delivery_settings(runtime=runtime, retry_delays_s=(0.2, 0.2, 0.2))
        async with running_service(kafka_settings, codec, catalogue, settings) as svc:
            await wait_until(lambda: svc.registry.view.get("ep_injected") is not None)
            doomed = await out.request("ep_injected")
            fine = await out.request(good.endpoint_id)
            await bird.wait_for(1)
            await wait_until(lambda: svc.worker.failed >= 1)
            await asyncio.sleep(2)  # long enough for a rewind loop or retries to show
    [hit] = bird.hits  # the good endpoint once; the injected header never left the worker
    assert "X-Injected" not in hit.headers
    dead = await wait_dead_letters(kafka_settings, codec, catalogue, 1)
    assert [d.delivery_id for d in dead] == [doomed.delivery_id]
    assert dead[0].failure.reason is DeadLetterReason.FATAL
    assert "unsendable_request" in dead[0].failure.message
    rows = await read_all(kafka_settings, codec, catalogue.name("webhooks.attempts"))
    tried = [e for _, e, _ in rows if getattr(e, "delivery_id", None) == doomed.delivery_id]
    assert [type(e) for e in tried] == [WebhookDeliveryAttempted, WebhookDeliveryFailed]
    assert fine.delivery_id in {getattr(e, "delivery_id", None) for _, e, _ in rows}


async def test_an_oversized_delivery_is_dead_lettered_and_fanout_goes_on(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    # 350,000 "é": about 700 kB as an event, 2.1 MB as a JSON body ("\u00e9" each)
    huge = ResearchStepStarted(
        research_id="r-1", step_id="s-1", step_kind="search", description="é" * 350_000
    )
    small = ResearchStepStarted(research_id="r-1", step_id="s-2", step_kind="search")
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, _ = await out.admin.register(bird.url, event_types=["research.step_started"])
        settings = delivery_settings(source_topics=("research.events",))
        async with running_service(kafka_settings, codec, catalogue, settings, fanout=True) as svc:
            await out.publisher.publish(huge)
            await out.publisher.publish(small)
            [hit] = await bird.wait_for(1)
            assert svc.fanout is not None
            await wait_until(lambda: svc.fanout is not None and svc.fanout.dead_lettered == 1)
    assert b'"s-2"' in hit.body
    [dead] = await wait_dead_letters(kafka_settings, codec, catalogue, 1)
    assert dead.endpoint_id == endpoint.endpoint_id
    assert dead.request.delivered_event_id == str(huge.event_id)
    assert dead.failure.reason is DeadLetterReason.FATAL
    assert "cannot be written" in dead.failure.message
    assert dead.failure.original_topic == catalogue.name("research.events")


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_a_tier_record_due_in_9999_is_dead_lettered_and_the_next_one_delivered(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        endpoint, _ = await out.admin.register(bird.url)
        poison, due = (
            WebhookDeliveryRequested(
                delivery_id=f"msg_{n}_{endpoint.endpoint_id}",
                endpoint_id=endpoint.endpoint_id,  # the key: both on one partition, in order
                delivered_event_type="call.succeeded",
                delivered_event_id=f"e-{n}",
                payload='{"type":"t"}',
                attempt=2,
            )
            for n in (1, 2)
        )
        for request, when in ((poison, "9999-01-01T00:00:00+00:00"), (due, "2020-01-01")):
            await out.publisher.publish(
                request,
                topic="webhooks.deliveries.retry.1",
                headers={h.DUE_AT: when.encode()},
            )
        settings = delivery_settings(runtime=runtime)
        async with running_service(kafka_settings, codec, catalogue, settings):
            [hit] = await bird.wait_for(1)
            await wait_dead_letters(kafka_settings, codec, catalogue, 1, timeout=30)
    rows = await dead_letters(kafka_settings, codec, catalogue)
    assert hit.headers["webhook-id"] == due.delivery_id
    [(dead, headers)] = rows
    assert isinstance(dead, WebhookDeliveryDeadLettered)
    assert dead.delivery_id == poison.delivery_id
    assert dead.failure.reason is DeadLetterReason.FATAL
    assert "9999-01-01" in dead.failure.message
    assert headers[h.DLT_REASON] == b"fatal"
    assert headers[h.DLT_ERROR_CLASS] == b"RetryDueTooLate"
