"""One trace from ``POST /v1/calls`` through Kafka to the provider call and back to the caller."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agents.retry import RetryPolicy
from agents.settings import WorkerSettings
from connectors.calls_api import calls_extension
from connectors.gateway import GatewaySettings, build_gateway
from streams import Publisher
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallRequested, CallSucceeded
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import TopicReader, running_worker, terminal
from tests.integration.tracing.conftest import chain

pytestmark = pytest.mark.integration


async def test_one_trace_spans_the_call_path(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    spans: InMemorySpanExporter,
) -> None:
    app = build_gateway(
        GatewaySettings(tokens={"me": "t"}),
        kafka_settings,
        schema_registry,
        catalogue,
        extensions=[calls_extension(kafka_settings, schema_registry, catalogue, max_wait_s=20)],
    )
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    settings = WorkerSettings(group_id=f"{catalogue.prefix}calls")
    await client.start_server()
    try:
        async with (
            running_worker(kafka_settings, codec, catalogue, settings, {"svc": ScriptedService()}),
            TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
        ):
            body = {"service": "svc", "operation": "chat", "payload": {"q": "hi"}}
            response = await client.post(
                "/v1/calls?wait=20s", json=body, headers={"Authorization": "Bearer t"}
            )
            assert response.status == 200, await response.text()
            call_id = (await response.json())["call_id"]
            await results.wait_for(lambda r: call_id in {e.call_id for e in terminal(r)})
            [result_headers] = [
                hs for e, hs, _ in results.records if getattr(e, "call_id", None) == call_id
            ]
    finally:
        await client.close()

    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /v1/calls"]
    [route] = [s for s in finished if s.name == "calls.route"]
    [execute] = [s for s in finished if s.name == "call.execute"]
    [provider] = [s for s in finished if s.kind is SpanKind.CLIENT and s.name == "svc chat"]
    trace_id = server.context.trace_id
    assert {route.context.trace_id, execute.context.trace_id, provider.context.trace_id} == {
        trace_id
    }
    assert route.parent is not None
    assert execute.parent is not None
    assert provider.parent is not None
    assert route.parent.span_id == server.context.span_id  # through calls.requests
    assert execute.parent.span_id == route.context.span_id  # through a lane
    assert provider.parent.span_id == execute.context.span_id
    # and back: the outcome the reply waiter handed to the caller carries the same trace
    traceparent = result_headers[h.TRACEPARENT].decode()
    assert traceparent.split("-")[1] == f"{trace_id:032x}"
    assert traceparent.split("-")[2] == f"{execute.context.span_id:016x}"


async def test_a_retried_call_stays_in_one_trace_through_its_retry_tier(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    spans: InMemorySpanExporter,
) -> None:
    settings = WorkerSettings(
        group_id=f"{catalogue.prefix}calls", retry=RetryPolicy(delays_s=(0.5,))
    )
    tracer = trace.get_tracer("test")
    async with (
        running_worker(kafka_settings, codec, catalogue, settings, {"svc": ScriptedService()}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
        Publisher(kafka_settings, codec, catalogue) as publisher,
    ):
        with tracer.start_as_current_span("caller") as caller:
            request = CallRequested(
                call_id="c-retried",
                service="svc",
                operation="chat",
                payload='{"fail": "retriable", "times": 1}',
                idempotency_key="k-retried",
            )
            await publisher.publish(request)
        await results.wait_for(lambda r: "c-retried" in {e.call_id for e in terminal(r)})
        [outcome] = [e for e in terminal(results) if e.call_id == "c-retried"]
    assert isinstance(outcome, CallSucceeded)

    finished = spans.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    ours = [s for s in finished if s.context.trace_id == trace_id]
    executes = sorted(
        (s for s in ours if s.name == "call.execute"), key=lambda s: s.start_time or 0
    )
    assert len(executes) == 2
    assert chain(executes[0], ours) == ["call.execute", "calls.route", "caller"]
    # the failed attempt's retry record carries its span; the tier hop continues it
    assert chain(executes[1], ours) == [
        "call.execute",
        "calls.retry",
        "call.execute",
        "calls.route",
        "caller",
    ]
