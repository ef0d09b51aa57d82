"""Edge validation pieces of the gateway (issue 10, items 3, 4, 11, 12, 14, 17)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.settings import WorkerSettings
from agents.worker import consumer_groups
from connectors.gateway._ingest import _build, accepted_types, may_write
from connectors.gateway._validate import (
    call_problems,
    long_problems,
    may_exceed_long,
    too_deep,
    validate_strict,
)
from connectors.gateway.settings import GatewaySettings
from streams.events import EVENT_TYPES
from streams.events.calls import CallRequested
from streams.topics import PUBLIC_EVENT_TYPES, Catalogue, is_internal


def test_depth_is_judged_without_parsing_and_ignores_brackets_in_strings() -> None:
    assert not too_deep(b'{"a": [1, {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}', 32)
    assert too_deep("[" * 33 + "]" * 33, 32)
    assert not too_deep("[" * 32 + "]" * 32, 32)
    assert too_deep(b'{"s": "\\"[", "x": ' + b"[" * 40 + b"]" * 40 + b"}", 32)
    too_deep("[" * 1_000_000)  # no RecursionError, no parse


def test_strict_validation_refuses_coercions_but_not_integral_floats() -> None:
    cls = EVENT_TYPES["call.requested"]
    base = {
        "call_id": "c",
        "service": "s",
        "operation": "o",
        "payload": "{}",
        "idempotency_key": "k",
    }
    for bad in ({"attempt": "3"}, {"attempt": True}, {"timeout_ms": False}, {"deadline": 0}):
        with pytest.raises(ValidationError):
            validate_strict(cls, json.dumps({**base, **bad}))
    event = validate_strict(cls, json.dumps({**base, "attempt": 2.0, "timeout_ms": 1e3}))
    assert (event.attempt, event.timeout_ms) == (2, 1000)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        validate_strict(cls, json.dumps({**base, "attempt": 2.5}))


def test_internal_types_need_a_grant_and_old_configurations_keep_public_types() -> None:
    assert set(EVENT_TYPES) >= PUBLIC_EVENT_TYPES
    assert is_internal("call.started")
    assert not is_internal("call.requested")
    old = GatewaySettings(tokens="a=t1")  # no grants: public types only
    assert set(accepted_types(old, "a")) == PUBLIC_EVENT_TYPES
    granted = GatewaySettings(tokens="a=t1,b=t2", grants="b=call.started|monitoring.*")
    assert may_write(granted, "b", "monitoring.alert_raised")
    assert may_write(granted, "b", "call.started")
    assert not may_write(granted, "b", "call.succeeded")
    assert not may_write(granted, "a", "call.started")
    assert not may_write(granted, None, "call.started")


def test_the_worker_names_the_groups_it_joins() -> None:
    """Item 17: the log said "group backbone-calls"; the aiokafka stages join three groups."""
    line = consumer_groups(WorkerSettings())
    assert line == "groups backbone-calls.router, backbone-calls.lanes, backbone-calls.retry"
    assert consumer_groups(WorkerSettings(runtime="faust")) == "group backbone-calls (Faust app)"


def test_endpoint_urls_are_normalised_and_hosts_must_be_names() -> None:
    """Item 17 (found by schemathesis's coverage phase): ``http://g*`` was stored."""
    from connectors.webhooks._admin import normalise_url
    from connectors.webhooks.errors import WebhookError

    assert normalise_url("HTTPS://Hooks.Example.COM") == "https://hooks.example.com/"
    assert normalise_url("https://bücher.example/") == "https://xn--bcher-kva.example/"
    for bad in ("http://g*", "ftp://x.example/", "http://"):
        with pytest.raises(WebhookError):
            normalise_url(bad)


#: a minimal valid call.requested body
_CALL = {"call_id": "c", "service": "s", "operation": "o", "payload": "{}", "idempotency_key": "k"}


@given(st.one_of(st.integers(), st.integers(-(2**70), 2**70).map(float)))
def test_the_long_precheck_never_skips_an_integer_avro_cannot_carry(number: int | float) -> None:
    """``may_exceed_long`` lets the gateway skip the walk over the model: it must be True
    whenever the walk would find something (integers, and integral floats read as integers)."""
    cls = EVENT_TYPES["call.requested"]
    body = {**_CALL, "attempt": number}
    raw = json.dumps(body).encode()
    try:
        event = validate_strict(cls, raw)
    except ValidationError:
        return  # refused anyway (not an integer)
    if long_problems(event):
        assert may_exceed_long(raw)
    assert not may_exceed_long(json.dumps({**body, "attempt": 3}))  # the common case: skipped


@pytest.mark.parametrize(
    "raw",
    [b'{"a":1e30}', b'{"a": \n\t-2.5E+40}', b'{"a": [1, 2e19]}', b"[9e99]", b'{"a":[\r\n7e3]}'],
)
def test_the_long_precheck_sees_an_exponent_wherever_json_puts_a_number(raw: bytes) -> None:
    assert may_exceed_long(raw)


def test_the_long_precheck_skips_digits_and_an_e_inside_a_string() -> None:
    """A hex id ("ingest-1e5f...") is no number: the walk over the model is skipped."""
    assert not may_exceed_long(b'{"call_id": "ingest-1e5f09ab-3", "idempotency_key": "k-2e9"}')


@pytest.mark.parametrize(
    ("reply_to", "refused"), [(None, False), ("calls.results", False), ("x", True)]
)
def test_a_call_may_name_only_a_topic_that_carries_call_outcomes(
    reply_to: str | None, refused: bool
) -> None:
    call = CallRequested(
        call_id="c",
        service="s",
        operation="o",
        payload="{}",
        idempotency_key="k",
        reply_to=reply_to,
    )
    types = [p["type"] for p in call_problems(call, Catalogue(prefix="t."))]
    assert types == (["unknown_topic"] if refused else [])


#: what the precheck was before its substring tests (one regex over the whole text)
_REGEX_PRECHECK = re.compile(rb"\d{19}|[:\[,]\s*-?\d+(?:\.\d+)?[eE]")


@given(st.text(alphabet='0123456789eE.:,[]{} "-\\ab\t\n\r\x0b\x0c', max_size=60))
def test_the_long_precheck_is_true_wherever_the_regex_alone_matches(text: str) -> None:
    """The substring tests only rule out what the regex cannot find: never a number it finds."""
    raw = text.encode()
    if _REGEX_PRECHECK.search(raw) is not None:
        assert may_exceed_long(raw)
    else:
        # True only where dropping a minus sign joined two runs of digits into 19
        assert not may_exceed_long(raw) or "-" in text


def test_the_long_precheck_tells_a_body_without_numbers_from_one_with_an_exponent() -> None:
    assert not may_exceed_long(b'{"call_id": "ingest-6cec305e-5", "service": "service-3"}')
    assert may_exceed_long(b'{"call_id": "ingest-6cec305e-5", "attempt": 1e9}')
    assert may_exceed_long(b'{"call_id": "ingest-6cec305e-5", "attempt": 12345678901234567890}')


def test_an_accepted_event_names_the_client_unless_it_names_its_own_source() -> None:
    body = dict(_CALL)
    built = _build(CallRequested, json.dumps(body).encode(), "acme", Catalogue(), 20)
    assert isinstance(built, CallRequested)
    assert built.source == "gateway:acme"
    assert "source" in built.model_fields_set
    assert built == CallRequested.model_validate({**body, "event_id": built.event_id,
                                                  "occurred_at": built.occurred_at,
                                                  "source": "gateway:acme"})  # fmt: skip
    own = _build(
        CallRequested, json.dumps({**body, "source": "etl"}).encode(), "acme", Catalogue(), 20
    )
    assert isinstance(own, CallRequested)
    assert own.source == "etl"
