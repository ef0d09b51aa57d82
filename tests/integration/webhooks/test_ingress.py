"""Inbound webhooks through the real broker: verification, durability, replay protection."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import standardwebhooks

from connectors.webhooks import sign_github, signed_headers
from infra.kafka.broker import BrokerOptions, LocalBroker
from streams.codec import Codec
from streams.events.webhooks import RejectionReason, WebhookReceived, WebhookRejected
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import (
    GITHUB_SECRET,
    PARTNER_SECRET,
    ingress_settings,
    read_all,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.integration


def _msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def _received(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> list[WebhookReceived]:
    rows = await read_all(kafka, codec, catalogue.name("webhooks.inbound"))
    return [e for _, e, _ in rows if isinstance(e, WebhookReceived)]


async def _rejected(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> list[WebhookRejected]:
    rows = await read_all(kafka, codec, catalogue.name("webhooks.audit"))
    return [e for _, e, _ in rows if isinstance(e, WebhookRejected)]


async def test_valid_webhook_is_written_then_acknowledged(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    body = b'{"type": "invoice.paid", "amount": 12}'
    msg_id = _msg_id()
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        status, answer = await _post(
            f"{base}/webhooks/partner",
            body,
            {**signed_headers([PARTNER_SECRET], msg_id, body), "Authorization": "Bearer x"},
        )
    assert status == 202
    assert answer["webhook_id"] == msg_id
    [event] = await _received(kafka_settings, codec, catalogue)
    assert event.body == body
    assert event.sender == "partner"
    assert event.webhook_id == msg_id
    assert event.verified_by == "standard"
    assert event.remote_addr == "127.0.0.1"
    assert event.headers["webhook-id"] == msg_id
    assert "authorization" not in event.headers  # only selected headers are kept
    # one record per webhook: the event carries its seen-set key, no marker is written
    [(_, _, headers)] = await read_all(kafka_settings, codec, catalogue.name("webhooks.inbound"))
    assert headers["webhook-seen"] == f"partner/{msg_id}".encode()
    assert await read_all(kafka_settings, codec, catalogue.name("webhooks.seen")) == []


async def test_reference_library_signed_request_accepted(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    body = '{"hello": "world"}'
    now = datetime.now(tz=UTC)
    reference = standardwebhooks.Webhook(PARTNER_SECRET.reveal())
    headers = {
        "webhook-id": "msg_reference",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": reference.sign("msg_reference", now, body),
    }
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        status, _ = await _post(f"{base}/webhooks/partner", body.encode(), headers)
    assert status == 202
    [event] = await _received(kafka_settings, codec, catalogue)
    assert event.body == body.encode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        ("bad_signature", RejectionReason.BAD_SIGNATURE),
        ("stale", RejectionReason.STALE_TIMESTAMP),
        ("missing", RejectionReason.MALFORMED),
    ],
)
async def test_rejections_answer_401_and_leave_an_audit_event(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    mutate: str,
    reason: RejectionReason,
) -> None:
    body = b'{"secret-ish": "never in the audit"}'
    msg_id = _msg_id()
    ts = int(time.time()) - (600 if mutate == "stale" else 0)
    headers = signed_headers([PARTNER_SECRET], msg_id, body, timestamp=ts)
    if mutate == "bad_signature":
        headers = signed_headers([PARTNER_SECRET], msg_id, b"other body", timestamp=ts)
    if mutate == "missing":
        del headers["webhook-signature"]
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        status, answer = await _post(f"{base}/webhooks/partner", body, headers)
    assert status == 401
    assert answer["error"]["code"] == reason.value
    assert await _received(kafka_settings, codec, catalogue) == []
    [audit] = await _rejected(kafka_settings, codec, catalogue)
    assert audit.reason is reason
    assert audit.sender == "partner"
    assert audit.webhook_id == msg_id
    assert audit.remote_addr == "127.0.0.1"
    assert b"never in the audit" not in audit.model_dump_json().encode()


async def test_unknown_source_is_404(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        status, _ = await _post(f"{base}/webhooks/nobody", b"{}", {})
    assert status == 404


async def test_oversize_body_is_413_before_buffering(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    big = b"x" * 2048
    async with running_gateway(
        kafka_settings, codec, catalogue, ingress_settings(max_body_bytes=1024)
    ) as (base, _):
        status, answer = await _post(f"{base}/webhooks/partner", big, {})
        assert status == 413
        assert answer["error"]["limit"] == 1024

        async def chunks() -> object:  # no Content-Length: the cap is enforced while reading
            for _ in range(8):
                yield b"y" * 512

        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/webhooks/partner", data=chunks()) as r,
        ):
            assert r.status == 413
    assert await _received(kafka_settings, codec, catalogue) == []


async def test_github_scheme(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    body = b'{"action": "opened"}'
    good = {
        "X-Hub-Signature-256": sign_github(GITHUB_SECRET.encode(), body),
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Event": "pull_request",
    }
    bad = {**good, "X-Hub-Signature-256": sign_github(b"wrong", body)}
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        assert (await _post(f"{base}/webhooks/gh", body, good))[0] == 202
        assert (await _post(f"{base}/webhooks/gh", body, bad))[0] == 401
    [event] = await _received(kafka_settings, codec, catalogue)
    assert event.verified_by == "github"
    assert event.headers["x-github-event"] == "pull_request"


async def test_replay_is_acknowledged_without_a_second_event_even_after_restart(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    body = b'{"n": 1}'
    msg_id = _msg_id()
    settings = ingress_settings()
    async with running_gateway(kafka_settings, codec, catalogue, settings) as (base, _):
        first = await _post(
            f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], msg_id, body)
        )
        again = await _post(
            f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], msg_id, body)
        )
    assert first[0] == 202
    assert again == (200, {"status": "duplicate", "webhook_id": msg_id})
    # a new gateway process: its memory is empty, the seen-set comes back from Kafka
    async with running_gateway(kafka_settings, codec, catalogue, settings) as (base, gateway):
        assert len(gateway.seen) == 1
        replay = await _post(
            f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], msg_id, body)
        )
        other = await _post(
            f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], _msg_id(), body)
        )
    assert replay[0] == 200
    assert other[0] == 202
    assert len(await _received(kafka_settings, codec, catalogue)) == 2


async def test_an_id_accepted_by_one_gateway_is_refused_by_another_running_beside_it(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    """Two gateways (two processes behind one load balancer) share the seen-set through the
    accepted events on ``webhooks.inbound``: the second learns the id while running."""
    body = b'{"n": "two gateways"}'
    msg_id = _msg_id()
    key = f"partner/{msg_id}".encode()
    settings = ingress_settings()
    async with (
        running_gateway(kafka_settings, codec, catalogue, settings) as (first, _),
        running_gateway(kafka_settings, codec, catalogue, settings) as (second, other),
    ):
        headers = signed_headers([PARTNER_SECRET], msg_id, body)
        assert (await _post(f"{first}/webhooks/partner", body, headers))[0] == 202
        await wait_until(lambda: key in other.seen, timeout=60)  # the tailing lag: polled
        again = await _post(f"{second}/webhooks/partner", body, headers)
    assert again == (200, {"status": "duplicate", "webhook_id": msg_id})
    assert len(await _received(kafka_settings, codec, catalogue)) == 1


async def test_concurrent_identical_requests_write_one_event(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    body = b'{"race": true}'
    msg_id = _msg_id()
    headers = signed_headers([PARTNER_SECRET], msg_id, body)
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        results = await asyncio.gather(
            *(_post(f"{base}/webhooks/partner", body, headers) for _ in range(10))
        )
    assert sorted(status for status, _ in results) == [200] * 9 + [202]
    assert len(await _received(kafka_settings, codec, catalogue)) == 1


async def test_kafka_unavailable_is_503_and_nothing_marked_seen(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    from streams.admin import apply_catalogue

    broker = LocalBroker(BrokerOptions(heap="256m", quick_start=True))
    await asyncio.to_thread(broker.start)
    try:
        own = KafkaSettings(bootstrap=broker.bootstrap, client_id="wh-503", linger_ms=0)
        await apply_catalogue(own, catalogue)
        body = b'{"n": 503}'
        settings = ingress_settings(ack_timeout_s=1.5)
        async with running_gateway(own, codec, catalogue, settings) as (base, gateway):
            gateway.stop_timeout_s = 1  # unacknowledged records cannot be flushed: do not wait
            ok = await _post(
                f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], _msg_id(), body)
            )
            assert ok[0] == 202
            await asyncio.to_thread(broker.stop)
            msg_id = _msg_id()
            down = await _post(
                f"{base}/webhooks/partner", body, signed_headers([PARTNER_SECRET], msg_id, body)
            )
            assert down[0] == 503
            assert f"partner/{msg_id}".encode() not in gateway.seen
    finally:
        await asyncio.to_thread(broker.stop)


async def test_item17_github_replay_under_a_new_delivery_id_is_a_duplicate(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    """Issue 10 item 17: GitHub signs no timestamp, so the same body and signature under a new
    X-GitHub-Delivery was accepted again (a second event)."""
    body = b'{"action": "opened", "number": 7}'
    signature = sign_github(GITHUB_SECRET.encode(), body)
    async with running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _):
        for attempt in range(3):
            headers = {
                "X-Hub-Signature-256": signature,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-GitHub-Event": "pull_request",
            }
            status, answer = await _post(f"{base}/webhooks/gh", body, headers)
            assert status == (202 if attempt == 0 else 200), answer
        other = b'{"action": "closed", "number": 7}'
        headers = {
            "X-Hub-Signature-256": sign_github(GITHUB_SECRET.encode(), other),
            "X-GitHub-Delivery": str(uuid.uuid4()),
        }
        assert (await _post(f"{base}/webhooks/gh", other, headers))[0] == 202
    events = await _received(kafka_settings, codec, catalogue)
    assert sorted(e.body for e in events) == sorted([body, other])
