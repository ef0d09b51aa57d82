"""Research progress on the real broker: the projection behind ``GET /v1/research``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.research import research_extension
from connectors.gateway import GatewaySettings, build_gateway
from streams.codec import Codec
from streams.events import Event
from streams.events.calls import CallFailed, CallRetryScheduled, CallSucceeded
from streams.events.research import (
    ResearchCompleted,
    ResearchOutcome,
    ResearchProgressReported,
    ResearchStarted,
    ResearchStepCompleted,
    ResearchStepFailed,
    ResearchStepStarted,
)
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import read_all

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer t"}
Client = TestClient[web.Request, web.Application]


def succeeded(n: int, run: str | None, cost: float) -> CallSucceeded:
    return CallSucceeded(
        call_id=f"{run}-c{n}",
        service="llm",
        operation="chat",
        status=200,
        latency_ms=100.0 + n,
        tokens_prompt=10 * n,
        tokens_completion=n,
        cost_usd=cost,
        attempt=0,
        idempotency_key=f"{run}-k{n}",
        correlation_id=run,
    )


def failed(n: int, run: str) -> CallFailed:
    return CallFailed(
        call_id=f"{run}-f{n}",
        service="search",
        operation="query",
        error_class="Timeout",
        message="slow",
        retriable=True,
        attempt=0,
        latency_ms=5000.0,
        idempotency_key=f"{run}-fk{n}",
        correlation_id=run,
    )


def story() -> list[Event]:
    r1, r2 = "run-1", "run-2"
    events: list[Event] = [
        ResearchStarted(research_id=r1, question="Why?", requested_by="ana"),
        ResearchStepStarted(research_id=r1, step_id="s1", step_kind="search"),
        ResearchStepCompleted(research_id=r1, step_id="s1", step_kind="search", duration_ms=1200),
        ResearchStepStarted(research_id=r1, step_id="s2", step_kind="fetch"),
        ResearchStepFailed(
            research_id=r1,
            step_id="s2",
            step_kind="fetch",
            error_class="Timeout",
            message="slow",
            retriable=True,
        ),
        ResearchStepStarted(research_id=r1, step_id="s3", step_kind="summarise"),
        ResearchProgressReported(research_id=r1, percent=40, steps_completed=2, steps_total=5),
        ResearchStarted(research_id=r2, question="How?", requested_by="bo"),
        ResearchCompleted(
            research_id=r2, outcome=ResearchOutcome.SUCCEEDED, duration_ms=900, summary="done"
        ),
    ]
    events += [succeeded(n, r1, 0.01 * n) for n in range(1, 9)]
    events += [failed(n, r1) for n in range(3)]
    events += [
        CallRetryScheduled(
            call_id=f"{r1}-f0",
            service="search",
            due_at=events[0].occurred_at,
            tier=1,
            attempt=1,
            idempotency_key=f"{r1}-fk0",
            correlation_id=r1,
        ),
        succeeded(1, r2, 0.5),
        succeeded(99, None, 9.0),  # no correlation: nobody's run
        succeeded(98, "run-10", 7.0),  # a run whose id starts like run-1's
    ]
    return events


async def recount(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, run: str
) -> dict[str, Any]:
    """The figures of one run counted straight from the raw topics."""
    rows = await read_all(kafka, codec, catalogue.name("calls.results"))
    seen: dict[Any, Any] = {e.event_id: e for _, e, _ in rows if e.correlation_id == run}
    ok = [e for e in seen.values() if isinstance(e, CallSucceeded)]
    bad = [e for e in seen.values() if isinstance(e, CallFailed)]
    return {
        "made": len(ok) + len(bad),
        "succeeded": len(ok),
        "failed": len(bad),
        "retries": sum(isinstance(e, CallRetryScheduled) for e in seen.values()),
        "cost_usd": pytest.approx(sum(e.cost_usd for e in ok)),
        "tokens_prompt": sum(e.tokens_prompt for e in ok),
    }


async def _until(
    get: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float = 60
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"last answer: {value}")
        await asyncio.sleep(0.2)


async def _client(
    kafka: KafkaSettings, registry: RegistrySettings, catalogue: Catalogue, store: Path
) -> Client:
    app = build_gateway(
        GatewaySettings(tokens={"me": "t"}),
        kafka,
        registry,
        catalogue,
        extensions=[research_extension(kafka, catalogue, store, group_id=f"{catalogue.prefix}rp")],
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _maybe(client: Client, path: str) -> Any:
    """The answer, or None while the projection has not seen the run yet (404)."""
    response = await client.get(path, headers=AUTH)
    if response.status == 404:
        return None
    assert response.status == 200, await response.text()
    return await response.json()


async def _json(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


@pytest.fixture
async def events(kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue) -> list[Event]:
    produced = story()
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(produced)
    return produced


async def test_progress_equals_a_recount_and_survives_duplicates_and_restarts(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    events: list[Event],
    tmp_path: Path,
) -> None:
    expected = await recount(kafka_settings, codec, catalogue, "run-1")
    client = await _client(kafka_settings, schema_registry, catalogue, tmp_path)
    try:
        run = await _until(
            lambda: _maybe(client, "/v1/research/run-1"),
            lambda r: (
                r is not None
                and r["calls"]["made"] == expected["made"]
                and r["steps"]["total"] == 3
            ),
        )
        assert {k: run["calls"][k] for k in expected} == expected
        assert run["status"] == "running"
        assert run["progress_percent"] == 40
        assert (run["steps"]["succeeded"], run["steps"]["failed"], run["steps"]["running"]) == (
            1,
            1,
            0 + 1,
        )
        assert run["steps"]["items"]["s1"]["duration_ms"] == 1200
        assert run["question"] == "Why?"
        running = await _json(client, "/v1/research?status=running")
        assert [r["research_id"] for r in running["runs"]] == ["run-1"]
        done = await _until(
            lambda: _json(client, "/v1/research?status=succeeded"),
            lambda d: [r["calls"]["made"] for r in d["runs"]] == [1],
        )
        assert done["runs"][0]["progress_percent"] == 100
        assert (await _json(client, "/v1/research/nope", 404))["error"][
            "code"
        ] == "unknown_research"
        assert (await _json(client, "/v1/research?status=bogus", 400))["error"][
            "code"
        ] == "invalid_status"
        spec = await _json(client, "/openapi.json")
        assert {"/v1/research", "/v1/research/{research_id}"} <= set(spec["paths"])
        # the same events again (same event ids): nothing changes
        async with Publisher(kafka_settings, codec, catalogue) as publisher:
            await publisher.publish_many(events)
        runner_applied = await _until(
            lambda: _json(client, "/v1/research/run-1"),
            lambda r: r["projection"]["applied"] >= len(events),
        )
        assert {k: runner_applied["calls"][k] for k in expected} == expected
    finally:
        await client.close()
    # a restart answers from its store at once, and the same
    again = await _client(kafka_settings, schema_registry, catalogue, tmp_path)
    try:
        after = await _json(again, "/v1/research/run-1")
        assert {k: after["calls"][k] for k in expected} == expected
        assert after["steps"] == run["steps"]
    finally:
        await again.close()
