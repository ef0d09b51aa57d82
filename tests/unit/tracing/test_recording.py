"""``recording()``: asked per record, so it must follow an SDK installed after its first answer
(OpenTelemetry's global provider is set once) and pass a record's trace context through
without one."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import streams.tracing as tracing
from streams.tracing import consumed, current_traceparent, recording

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_sdk_installed_after_the_first_answer_is_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_recording", False)
    assert not recording()
    assert not recording()  # asked again: still none
    # what trace.set_tracer_provider does (it can be done once per process, so not here)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", TracerProvider())
    assert recording()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    assert recording()  # kept: a provider is never unset


def test_without_an_sdk_a_record_s_context_is_passed_through_or_none_made_up() -> None:
    assert not recording()
    with consumed("hop", {"traceparent": PARENT.encode()}) as span:
        assert current_traceparent() == PARENT
        assert span.get_span_context().is_valid
    assert current_traceparent() is None
    with consumed("hop", {}) as span:
        assert current_traceparent() is None
        assert not span.get_span_context().is_valid
