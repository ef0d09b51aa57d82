from __future__ import annotations

import json
import uuid

import agents.webhooks
import connectors.webhooks
import connectors.webhooks.gateway
import connectors.webhooks.registry
from agents.webhooks import deliveries_for, delivery_id, payload_of
from connectors.webhooks import WebhookSecret
from connectors.webhooks.registry import GRACE_HEADER, Endpoint, EndpointView, to_event
from streams.events import event_class
from streams.events.webhooks import WebhookEndpointDisabled


def _endpoint(**kw: object) -> Endpoint:
    base: dict[str, object] = {
        "endpoint_id": "ep_1",
        "url": "https://x.example/hook",
        "event_types": ("call.succeeded",),
        "headers": {},
        "secrets": (WebhookSecret.generate(),),
    }
    base.update(kw)
    return Endpoint(**base)  # type: ignore[arg-type]


def test_fold_registered_rotated_disabled() -> None:
    view = EndpointView()
    first = _endpoint()
    view.apply(to_event(first, registered=True), {}, 0)
    assert view.get("ep_1") is not None
    new = WebhookSecret.generate()
    rotated = _endpoint(secrets=(new, *first.secrets))
    view.apply(to_event(rotated), {GRACE_HEADER: b"1000.0"}, 1)
    current = view.get("ep_1")
    assert current is not None
    assert current.signing_secrets(now=999.0) == (new, *first.secrets)
    assert current.signing_secrets(now=1000.0) == (new,)
    view.apply(WebhookEndpointDisabled(endpoint_id="ep_1", reason="http_410"), {}, 2)
    current = view.get("ep_1")
    assert current is not None
    assert current.disabled
    assert current.disabled_reason == "http_410"
    assert list(view.matching("call.succeeded")) == []


def test_filters() -> None:
    assert _endpoint().accepts("call.succeeded")
    assert not _endpoint().accepts("call.failed")
    assert _endpoint(event_types=()).accepts("anything")


def test_fanout_is_deterministic_and_filtered() -> None:
    event = event_class("call.succeeded").model_validate(
        {
            "call_id": "c",
            "service": "s",
            "operation": "o",
            "status": 200,
            "latency_ms": 1.0,
            "attempt": 1,
            "idempotency_key": "k",
        }
    )
    endpoints = [_endpoint(), _endpoint(endpoint_id="ep_2", event_types=("call.failed",))]
    [request] = deliveries_for(event, endpoints)
    assert request.endpoint_id == "ep_1"
    assert request.delivery_id == delivery_id("ep_1", event.event_id)
    assert deliveries_for(event, endpoints)[0].delivery_id == request.delivery_id
    assert delivery_id("ep_2", event.event_id) != request.delivery_id
    assert delivery_id("ep_1", uuid.uuid4()) != request.delivery_id
    body = json.loads(payload_of(event))
    assert body["type"] == "call.succeeded"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["call_id"] == "c"


def test_exported_members() -> None:
    for module in (
        connectors.webhooks,
        connectors.webhooks.registry,
        connectors.webhooks.gateway,
        agents.webhooks,
    ):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert "verify" in connectors.webhooks.__all__
    assert "DestinationPolicy" in connectors.webhooks.__all__
