"""``/v1/webhook-endpoints`` and the registry topic: every reader sees the same endpoints."""

from __future__ import annotations

import aiohttp
import pytest

from connectors.webhooks import WebhookSecret
from connectors.webhooks.registry import EndpointRegistry
from streams.codec import Codec
from streams.events.webhooks import WebhookEndpointRegistered
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import ingress_settings, read_all, running_gateway

pytestmark = pytest.mark.integration


async def test_register_list_patch_rotate_disable(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    async with (
        running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _),
        aiohttp.ClientSession(base_url=base) as http,
    ):
        async with http.post(
            "/v1/webhook-endpoints",
            json={
                "url": "https://hooks.example.com/in",
                "event_types": ["call.succeeded"],
                "rate_limit_per_second": 20,
            },
        ) as r:
            assert r.status == 201
            created = await r.json()
        secret = created["secret"]
        WebhookSecret.parse(secret)
        endpoint_id = created["endpoint_id"]
        async with http.get("/v1/webhook-endpoints") as r:
            listed = await r.json()
        assert [e["endpoint_id"] for e in listed] == [endpoint_id]
        assert "secret" not in listed[0]  # shown once, at registration
        assert secret not in str(listed)
        async with http.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"event_types": []}
        ) as r:
            assert r.status == 200
            assert (await r.json())["event_types"] == []
        async with http.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"rotate_secret": True, "grace_s": 60}
        ) as r:
            rotated = await r.json()
        assert rotated["secret"] != secret
        assert rotated["rotating_until"] is not None
        async with http.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"disabled": True}) as r:
            assert (await r.json())["disabled"] is True
        async with http.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"url": "https://x.example/"}
        ) as r:
            assert r.status == 409  # re-enable explicitly first
        async with http.get("/v1/webhook-endpoints/ep_nope") as r:
            assert r.status == 404
        async with http.post("/v1/webhook-endpoints", json={"url": "ftp://x"}) as r:
            assert r.status == 400
        async with http.post("/v1/webhook-endpoints", json={"url": "https://x", "bogus": 1}) as r:
            assert r.status == 400

    # another process (a worker) folds the same topic into the same state
    registry = EndpointRegistry(kafka_settings, codec, catalogue.name("webhooks.endpoints"))
    await registry.start()
    await registry.stop()
    endpoint = registry.view.endpoints[endpoint_id]
    assert endpoint.disabled
    assert [s.reveal() for s in endpoint.secrets] == [rotated["secret"], secret]
    rows = await read_all(kafka_settings, codec, catalogue.name("webhooks.endpoints"))
    assert isinstance(rows[0][1], WebhookEndpointRegistered)
    assert {key for key, _, _ in rows} == {endpoint_id.encode()}  # keyed for compaction


async def test_item17_unsafe_urls_and_bad_headers_are_refused_at_registration(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    """Issue 10 items 17 and 1: SSRF-unsafe URLs and CR/LF header values were stored (201)."""
    async with (
        running_gateway(kafka_settings, codec, catalogue, ingress_settings()) as (base, _),
        aiohttp.ClientSession(base_url=base) as http,
    ):
        for url in (
            "http://127.0.0.1:9/in",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://2130706433/",
            "http://10.0.0.8/",
        ):
            async with http.post("/v1/webhook-endpoints", json={"url": url}) as r:
                assert r.status == 400, url
                error = (await r.json())["error"]
                assert "unsafe destination" in error["message"], error
        for headers in ({"X-Ok": "a\r\nX-Evil: 1"}, {"Bad Name": "v"}, {"X-Nul": "\x00"}):
            body = {"url": "https://hooks.example.com/in", "headers": headers}
            async with http.post("/v1/webhook-endpoints", json=body) as r:
                assert r.status == 400, headers
                assert (await r.json())["error"]["fields"][0]["field"].startswith("headers")
        async with http.post(
            "/v1/webhook-endpoints", json={"url": "HTTPS://Hooks.Example.COM"}
        ) as r:
            assert r.status == 201
            created = await r.json()
        assert created["url"] == "https://hooks.example.com/"  # normalised
        async with http.patch(
            f"/v1/webhook-endpoints/{created['endpoint_id']}", json={"url": "http://127.0.0.1/"}
        ) as r:
            assert r.status == 400
