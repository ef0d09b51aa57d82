"""The research projection across a broker outage: it shows not-ready in ``/readyz`` while Kafka
is away, recovers by itself once the broker is back (a fresh runner: restore, seek to the store's
checkpoint), and catches up with what was written after the restart, each record applied once.
Before, its checkpoint looked for the coordinator for minutes and nothing restarted it."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.research import ResearchProgress, ResearchReader, research_extension
from connectors.gateway import GatewaySettings, build_gateway
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.events.calls import CallSucceeded
from streams.events.research import ResearchStarted
from streams.producer import Publisher
from streams.projections import ProjectionRunner, SupervisedProjection
from streams.settings import KafkaSettings, RegistrySettings
from streams.supervise import Supervisor
from streams.topics import Catalogue
from tests.integration.outage._broker import eventually, own_broker

#: a broker of its own, started twice (10-60 s each on a loaded machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

AUTH = {"Authorization": "Bearer t"}
Client = TestClient[web.Request, web.Application]
RUN = "run-outage"


def _call(n: int) -> CallSucceeded:
    return CallSucceeded(
        call_id=f"{RUN}-c{n}",
        service="llm",
        operation="chat",
        status=200,
        latency_ms=10.0,
        tokens_prompt=n,
        tokens_completion=1,
        cost_usd=0.01,
        attempt=0,
        idempotency_key=f"{RUN}-k{n}",
        correlation_id=RUN,
    )


async def _publish(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, events: list[Event]
) -> None:
    """Write ``events``, retrying while a just-started broker settles (a record written twice by
    a retry has the same event id: the projection drops the second)."""
    async with Publisher(kafka, codec, catalogue) as publisher:

        async def written() -> bool:
            try:
                await publisher.publish_many(events)
            except BackboneError:
                return False
            return True

        await eventually(written, timeout_s=180)


async def _research_check(client: Client) -> dict[str, Any]:
    body = await (await client.get("/readyz")).json()
    return next(c for c in body["checks"] if c["name"] == "research-progress")


async def _made(client: Client) -> int:
    response = await client.get(f"/v1/research/{RUN}", headers=AUTH)
    if response.status == 404:
        return 0
    assert response.status == 200, await response.text()
    return int((await response.json())["calls"]["made"])


# make test keeps the checkpoint cut-off below (the same supervisor and runner, a harder fault)
@pytest.mark.chaos
@pytest.mark.parametrize("down_s", [0.0, 20.0], ids=lambda s: f"down-{s:g}s")
async def test_the_research_projection_recovers_from_a_broker_outage_by_itself(
    tmp_path: Path,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    down_s: float,
) -> None:
    """``down_s``: the broker stays down at least this long (``make test`` runs the shortest
    outage the projection notices; ``make chaos`` a ~20 s one)."""
    async with own_broker(tmp_path / "kafka", catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, request_timeout_ms=5_000, linger_ms=0)
        before: list[Event] = [ResearchStarted(research_id=RUN, question="?", requested_by="t")]
        before += [_call(n) for n in range(10)]
        await _publish(kafka, codec, catalogue, before)
        extension = research_extension(
            kafka, catalogue, tmp_path / "stores", group_id=f"{catalogue.prefix}rp"
        )
        app = build_gateway(
            GatewaySettings(tokens={"me": "t"}),
            kafka,
            schema_registry,
            catalogue,
            extensions=[extension],
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        try:

            async def caught_up(made: int) -> bool:
                return await _made(client) == made and (await _research_check(client))["ok"]

            await eventually(lambda: caught_up(10), timeout_s=180)

            await broker.stop()
            stopped = time.monotonic()

            async def not_ready() -> bool:
                return not (await _research_check(client))["ok"]

            await eventually(not_ready, timeout_s=120)
            detail = (await _research_check(client))["detail"]
            await asyncio.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
            await broker.start()

            await _publish(kafka, codec, catalogue, [_call(n) for n in range(10, 25)])
            await eventually(lambda: caught_up(25), timeout_s=300)
            response = await client.get(f"/v1/research/{RUN}", headers=AUTH)
            calls = (await response.json())["calls"]
        finally:
            await client.close()
    assert detail, "readiness named no reason"
    # each record applied once: none skipped, none counted twice
    assert calls["made"] == 25
    assert calls["succeeded"] == 25
    assert calls["tokens_prompt"] == sum(range(25))


class _GatedRunner(ProjectionRunner):
    """Steps only while ``gate`` is set: the test decides when a checkpoint runs."""

    def __init__(self, *args: Any, gate: asyncio.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.waiting = False

    async def step(self) -> int:
        self.waiting = True
        await self.gate.wait()
        self.waiting = False
        return await super().step()


async def test_a_checkpoint_cut_off_by_the_broker_gives_up_shows_and_recovers(
    tmp_path: Path,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records fetched before the broker died, their checkpoint's transaction after. The
    checkpoint gives up after ``commit_timeout_s`` (CheckpointFailed, in readiness and the log)
    and the runner stops while the broker is still down, so the supervisor builds a fresh one.
    Before, the stop waited for ever: aiokafka's sender, cancelled, awaited its
    AddPartitionsToTxn request, which looked for the transaction coordinator in an endless loop.
    Once the broker is back the projection catches up by itself, each record applied once."""
    caplog.set_level(logging.WARNING, logger="streams.supervise")
    async with own_broker(tmp_path / "kafka", catalogue) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, request_timeout_ms=3_000, linger_ms=0)
        await _publish(
            kafka,
            codec,
            catalogue,
            [ResearchStarted(research_id=RUN, question="?", requested_by="t")],
        )
        gate = asyncio.Event()
        gate.set()

        def make() -> ProjectionRunner:
            return _GatedRunner(
                kafka,
                codec,
                catalogue,
                ResearchProgress(),
                tmp_path / "stores",
                group_id=f"{catalogue.prefix}rp",
                commit_timeout_s=10.0,
                gate=gate,
            )

        supervisor = Supervisor("test", backoff_cap_s=2.0)
        projection = SupervisedProjection(ResearchProgress.name, make, supervisor)
        reader = ResearchReader(tmp_path / "stores")
        projection.start()
        try:

            async def running() -> bool:
                return reader.run(RUN) is not None and projection.problem() is None

            await eventually(running, timeout_s=180)
            first = projection.runner
            assert isinstance(first, _GatedRunner)
            gate.clear()

            async def at_the_gate() -> bool:
                return first.waiting

            await eventually(at_the_gate, timeout_s=60)
            await _publish(kafka, codec, catalogue, [_call(n) for n in range(5)])
            consumer = first._consumer
            assert consumer is not None
            results = catalogue.name("calls.results")
            ends = await consumer.end_offsets(
                [tp for tp in consumer.assignment() if tp.topic == results]
            )

            async def fetched() -> bool:  # the fetcher's answers carried the new records
                return all(consumer.highwater(tp) == end for tp, end in ends.items())

            await eventually(fetched, timeout_s=60)
            applied = first.status.applied
            await broker.stop()
            gate.set()
            seen: list[str] = []

            async def replaced() -> bool:  # the failed runner stopped: a fresh one was built
                if (problem := projection.problem()) is not None:
                    seen.append(problem)
                return projection.runs >= 2

            await eventually(replaced, timeout_s=120)
            assert first.status.state == "failed", first.status
            assert first.status.applied == applied  # nothing counted without its commit
            assert "CheckpointFailed" in (first.status.last_error or ""), first.status
            assert seen, "readiness named no problem while the broker was down"
            logged = [
                r.getMessage() for r in caplog.records if "CheckpointFailed" in r.getMessage()
            ]
            assert logged, "the failed checkpoint was not logged"

            await broker.start()

            async def caught_up() -> bool:
                run = reader.run(RUN)
                return (
                    run is not None and run["calls"]["made"] == 5 and projection.problem() is None
                )

            await eventually(caught_up, timeout_s=300)
            calls = (reader.run(RUN) or {})["calls"]
        finally:
            async with asyncio.timeout(60):  # stop always completes
                await supervisor.close()
            reader.close()
    # each record applied once: none skipped, none counted twice
    assert calls["made"] == 5
    assert calls["succeeded"] == 5
    assert calls["tokens_prompt"] == sum(range(5))
