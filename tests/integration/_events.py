"""Events the SDK tests publish (real contract models)."""

from __future__ import annotations

import uuid

from streams.events import Event, event_class


def call_requested(i: int = 0, service: str = "search") -> Event:
    cls = event_class("call.requested")
    return cls.model_validate(
        {
            "call_id": f"call-{i}-{uuid.uuid4().hex[:6]}",
            "service": service,
            "operation": "query",
            "payload": "{}",
            "idempotency_key": f"idem-{i}",
        }
    )


def call_requested_json(i: int = 0) -> dict[str, object]:
    return {
        "call_id": f"call-{i}",
        "service": "search",
        "operation": "query",
        "payload": "{}",
        "idempotency_key": f"idem-{i}",
    }
