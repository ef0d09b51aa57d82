"""The gateway's tracing middleware without an SDK: an incoming trace context still reaches the
records a request publishes, and none is made up (no SDK installed globally here)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from connectors.gateway._tracing import tracing_middleware
from streams.tracing import current_traceparent, recording

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _seen(request: web.Request) -> web.Response:
    """What a record published while handling ``request`` would carry."""
    return web.Response(text=current_traceparent() or "none")


async def test_an_incoming_traceparent_is_passed_through_to_the_records() -> None:
    assert not recording()
    request = make_mocked_request("POST", "/v1/events/x", headers={"traceparent": PARENT})
    response = await tracing_middleware(request, _seen)
    assert isinstance(response, web.Response)
    assert response.text == PARENT
    assert current_traceparent() is None  # detached once the request is answered


async def test_without_one_no_trace_context_is_made_up() -> None:
    request = make_mocked_request("POST", "/v1/events/x", headers={"tracestate": "k=v"})
    response = await tracing_middleware(request, _seen)
    assert isinstance(response, web.Response)
    assert response.text == "none"
