"""Issue 14 item 8: a call's payload is accepted as a JSON object everywhere (SDK, ``produce``,
``/v1/events``, ``/v1/calls``), and the JSON-string form still works."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from streams.events import event_class

BASE = {"call_id": "c-1", "service": "search", "operation": "query", "idempotency_key": "k-1"}


def test_object_and_string_payloads_give_the_same_event() -> None:
    cls = event_class("call.requested")
    as_object = cls.model_validate_json(json.dumps({**BASE, "payload": {"q": "kafka", "n": 3}}))
    as_string = cls.model_validate({**BASE, "payload": json.dumps({"q": "kafka", "n": 3})})
    assert as_object.model_dump(exclude={"event_id", "occurred_at"}) == as_string.model_dump(
        exclude={"event_id", "occurred_at"}
    )
    assert json.loads(as_object.payload) == {"q": "kafka", "n": 3}  # type: ignore[attr-defined]


def test_other_payload_types_are_still_refused() -> None:
    with pytest.raises(ValidationError, match="payload"):
        event_class("call.requested").model_validate({**BASE, "payload": 42})
