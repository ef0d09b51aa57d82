"""A webhook delivery continues the trace of the event it delivers, up to the receiver."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streams.codec import Codec
from streams.events import event_class
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.tracing.conftest import chain
from tests.integration.webhooks._kit import wait_until
from tests.integration.webhooks._outbound import admin_only, delivery_settings, running_service
from tests.integration.webhooks._receiver import receiver

pytestmark = pytest.mark.integration


async def test_a_delivery_continues_the_event_trace_to_the_receiver(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    spans: InMemorySpanExporter,
) -> None:
    succeeded = event_class("call.succeeded").model_validate(
        {
            "call_id": "c-traced",
            "service": "search",
            "operation": "query",
            "status": 200,
            "latency_ms": 12.5,
            "attempt": 1,
            "idempotency_key": "k-traced",
        }
    )
    tracer = trace.get_tracer("test")
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        await out.admin.register(bird.url, event_types=["call.succeeded"])
        settings = delivery_settings(source_topics=("calls.results",))
        async with running_service(kafka_settings, codec, catalogue, settings, fanout=True) as svc:
            with tracer.start_as_current_span("caller") as caller:
                await out.publisher.publish(succeeded)
            [hit] = await bird.wait_for(1)
            await wait_until(lambda: svc.worker.delivered == 1)

    trace_id = caller.get_span_context().trace_id
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    [post] = [s for s in ours if s.name == "webhook POST"]
    assert post.kind is SpanKind.CLIENT
    assert chain(post, ours) == ["webhook POST", "webhooks.deliver", "webhooks.fanout", "caller"]
    # the receiver got the trace too: its parent would be our HTTP client span
    assert hit.headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    assert hit.headers["traceparent"].split("-")[2] == f"{post.context.span_id:016x}"
