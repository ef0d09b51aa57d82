"""The broker-outage fault run: gateway and worker processes, a local HTTP provider, steady load
on ``/v1/events`` and ``/v1/calls``; the broker is SIGTERMed (or SIGKILLed), kept down, and started
again with its state. :func:`run_outage` returns what happened; the tests hold it against the oracle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from infra.kafka.broker import free_port
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.events.health import HealthChecked
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import TERMINAL, TopicReader
from tests.integration.chaos._kit import (
    TOKEN,
    Answer,
    lag_settles,
    post_loop,
    provider,
    start_process,
    stop_process,
    worker_groups,
)
from tests.integration.outage._broker import OwnBroker, eventually
from tests.integration.webhooks._kit import read_all

WORKER_CONFIG = """
[calls]
group_id = "{group}"
max_in_flight = 16
session_timeout_s = 10.0
rebalance_timeout_s = 60.0
commit_interval_s = 0.5
health_interval_s = 2.0

[calls.retry]
delays_s = [0.5, 1.0, 2.0]

[calls.breaker]
open_wait_s = 1.0

[[calls.services]]
name = "provider"
kind = "http"
base_url = "{provider}"
max_concurrency = 8
timeout_s = 5.0

[calls.services.rate_limit]
rate = 1000.0
burst = 100
"""


@dataclass
class FaultReport:
    down_s: float
    fault: signal.Signals = signal.SIGTERM
    events: list[Answer] = field(default_factory=list)
    calls: list[Answer] = field(default_factory=list)
    stopped_at: float = 0.0  # broker fully stopped
    restarting_at: float = 0.0  # broker start began
    restarted_wall: datetime | None = None
    health_after_restart: int = 0  # the worker's health loop wrote these after the outage
    lost_events: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # terminal events per accepted call
    outcome_kinds: Counter[str] = field(default_factory=Counter)
    doubles: dict[str, list[str]] = field(default_factory=dict)  # outcome kinds of repeated calls
    dead_letters: Counter[str] = field(default_factory=Counter)  # calls.dlt records per call
    log_bytes: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    #: refused requests (503, 4xx; not 504 outcome_unknown) whose event or call is in Kafka all the same
    refused_written: set[str] = field(default_factory=set)
    refused: int = 0
    lag_after: int = -1  # the worker's consumer lag once every accepted call had its outcome

    def refusals(self, answers: list[Answer]) -> list[Answer]:
        """Requests answered with an explicit refusal: "not written, and never written later".
        A 504 (``outcome_unknown``: sent, not acknowledged, may be in the log) is not one."""
        return [a for a in answers if a.status >= 400 and a.status != 504]

    def accepted(self, answers: list[Answer]) -> list[Answer]:
        return [a for a in answers if 200 <= a.status < 300]

    def while_down(self, answers: list[Answer]) -> list[Answer]:
        """Answers to requests sent and answered entirely while the broker was stopped."""
        return [a for a in answers if a.began > self.stopped_at and a.ended < self.restarting_at]

    def summary(self) -> str:
        accepted_calls = {a.ident for a in self.accepted(self.calls)}
        per_call = Counter(self.outcomes[c] for c in accepted_calls)
        return (
            f"{self.fault.name} outage {self.down_s:.0f} s: events {len(self.accepted(self.events))} accepted "
            f"of {len(self.events)}, lost {len(self.lost_events)}; calls "
            f"{len(accepted_calls)} accepted, outcomes per call {dict(sorted(per_call.items()))}, "
            f"kinds {dict(self.outcome_kinds)}, dead letters per call "
            f"{dict(Counter(self.dead_letters.values()))}; statuses events "
            f"{dict(Counter(a.status for a in self.events))} calls "
            f"{dict(Counter(a.status for a in self.calls))}; health checks after the restart "
            f"{self.health_after_restart}; refused {self.refused}, written anyway "
            f"{len(self.refused_written)} {sorted(self.refused_written)[:5]}; repeated outcomes "
            f"{self.doubles}; lag after {self.lag_after}; logs {self.log_bytes}"
        )


#: log bytes per process for a whole run: what one second of the old reconnect storm wrote
LOG_BUDGET_BYTES = 512 * 1024


def check_outage(report: FaultReport) -> None:
    print("\n" + report.summary())
    assert report.accepted(report.events), "no event was accepted before the outage"
    assert not report.lost_events, f"{len(report.lost_events)} acknowledged events lost"
    down = report.while_down(report.events) + report.while_down(report.calls)
    assert all(not 200 <= a.status < 300 for a in down), "a 2xx while the broker was down"
    statuses = {a.status for a in report.events + report.calls}
    assert 422 not in statuses, "the gateway refused writes (422) instead of 503"
    assert 500 not in statuses
    assert report.refused, "no request was refused: the outage proved nothing"
    assert not report.refused_written, (
        f"{len(report.refused_written)} refused requests were written all the same: "
        f"{sorted(report.refused_written)[:5]}"
    )
    accepted = {a.ident for a in report.accepted(report.calls)}
    assert accepted, "no call was accepted"
    missing = {c for c in accepted if report.outcomes[c] == 0}
    assert not missing, f"{len(missing)} of {len(accepted)} accepted calls have no outcome"
    repeated = {c: n for c, n in report.outcomes.items() if n > 1}
    assert not repeated, f"calls with more than one outcome: {repeated} ({report.doubles})"
    copies = {c: n for c, n in report.dead_letters.items() if n > 1}
    assert not copies, f"dead letters written more than once: {copies}"
    assert report.lag_after == 0, f"the worker's lag stayed at {report.lag_after}"
    assert report.health_after_restart > 0, "the worker's health loop did not resume"
    for name, size in report.log_bytes.items():
        assert size < LOG_BUDGET_BYTES, f"the {name} wrote {size} bytes of log"
    assert report.exit_codes == {"gateway": 0, "worker": 0}, report.exit_codes


@dataclass
class LoadedStack:
    """A gateway and a worker under steady load (:func:`loaded_stack`)."""

    report: FaultReport
    running: asyncio.Event
    clients: list[asyncio.Task[None]]

    async def accepted_since(self, moment: float) -> bool:
        return any(a.began > moment and 200 <= a.status < 300 for a in self.report.events)

    async def stop_load(self) -> None:
        self.running.clear()
        await asyncio.gather(*self.clients)


@contextlib.asynccontextmanager
async def loaded_stack(
    tmp_path: Path,
    bootstrap: str,
    registry: RegistrySettings,
    catalogue: Catalogue,
    report: FaultReport,
    *,
    ready_timeout_s: float = 300,
) -> AsyncIterator[LoadedStack]:
    """Gateway and worker processes naming only ``bootstrap``, a local HTTP provider, and steady
    load (3 clients on ``/v1/events``, 2 on ``/v1/calls``) whose answers go to ``report``. On the
    way out the load stops, both processes get SIGTERM (their exit codes and log sizes go to
    ``report``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {"gateway": tmp_path / "gateway.log", "worker": tmp_path / "worker.log"}
    async with provider() as provider_url:
        config = tmp_path / "backbone.toml"
        config.write_text(
            WORKER_CONFIG.format(group=f"{catalogue.prefix}calls", provider=provider_url)
        )
        env = {
            **os.environ,
            "BACKBONE_KAFKA_BOOTSTRAP": bootstrap,
            "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
            "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
            "BACKBONE_CONFIG": str(config),
            "BACKBONE_GATEWAY_PORT": str(port),
            "BACKBONE_GATEWAY_TOKENS": f"fault={TOKEN}",
            "BACKBONE_GATEWAY_RATE": "100000",
            "BACKBONE_GATEWAY_BURST": "100000",
        }
        gateway = await start_process(["gateway"], env, logs["gateway"])
        worker = await start_process(["worker"], env, logs["worker"])
        stack = LoadedStack(report, asyncio.Event(), [])
        stack.running.set()
        try:

            async def ready() -> bool:
                assert gateway.returncode is None, "the gateway exited while starting"
                try:
                    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout_s=ready_timeout_s)  # a loaded box: slow imports
            step = {"research_id": "", "step_id": "s1", "step_kind": "search"}
            call = {"service": "provider", "operation": "/echo", "idempotency_key": ""}
            events, calls = f"{base}/v1/events/research.step_started", f"{base}/v1/calls"
            stack.clients += [
                asyncio.create_task(
                    post_loop(events, step, "research_id", "event_id", report.events, stack.running)
                )
                for _ in range(3)
            ]
            stack.clients += [
                asyncio.create_task(
                    post_loop(
                        calls, call, "idempotency_key", "call_id", report.calls, stack.running
                    )
                )
                for _ in range(2)
            ]
            yield stack
        finally:
            stack.running.clear()
            for task in stack.clients:
                task.cancel()
            await asyncio.gather(*stack.clients, return_exceptions=True)
            report.exit_codes["gateway"] = await stop_process(gateway)
            report.exit_codes["worker"] = await stop_process(worker)
    report.log_bytes = {name: path.stat().st_size for name, path in logs.items()}


async def run_outage(
    tmp_path: Path,
    codec: Codec,
    registry: RegistrySettings,
    catalogue: Catalogue,
    down_s: float,
    fault: signal.Signals = signal.SIGTERM,
) -> FaultReport:
    report = FaultReport(down_s, fault)
    broker = OwnBroker(tmp_path / "kafka")
    await broker.start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, linger_ms=0)
    try:
        await apply_catalogue(kafka, catalogue)
        async with loaded_stack(tmp_path, kafka.bootstrap, registry, catalogue, report) as stack:
            await asyncio.sleep(8)  # steady load before the outage
            await broker.kill(fault)  # returns once the process is gone
            report.stopped_at = time.monotonic()
            await asyncio.sleep(down_s)
            report.restarting_at = time.monotonic()
            report.restarted_wall = datetime.now(UTC)
            await broker.start()
            await eventually(lambda: stack.accepted_since(report.restarting_at), timeout_s=180)
            await asyncio.sleep(8)  # steady load after recovery
            await stack.stop_load()
            await _settle(report, kafka, codec, catalogue)
    finally:
        await broker.stop()
    return report


async def _settle(
    report: FaultReport, kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    """Read what Kafka holds: every accepted event, the outcomes of every accepted call."""
    rows = await read_all(kafka, codec, catalogue.name("research.events"))
    written = {str(e.event_id) for _, e, _ in rows}
    report.lost_events = {a.ident for a in report.accepted(report.events)} - written
    accepted = {a.ident for a in report.accepted(report.calls)}
    async with TopicReader(
        kafka, codec, catalogue.name("calls.results"), committed=True
    ) as results:

        def settled(reader: TopicReader) -> bool:
            ended = {getattr(e, "call_id", None) for e in reader.events if e.event_type in TERMINAL}
            return accepted <= ended

        with contextlib.suppress(AssertionError):  # counted below: outcome-less calls fail
            await results.wait_for(settled, timeout=240)
        await asyncio.sleep(3)  # a duplicate outcome would show up now
        await results.poll()
        seen: set[str] = set()  # a record written again after an unacknowledged write: one
        for event in results.events:  # outcome (consumers deduplicate on event_id)
            call_id = getattr(event, "call_id", None)
            if str(event.event_id) in seen:
                continue
            seen.add(str(event.event_id))
            if event.event_type in TERMINAL and call_id in accepted:
                report.outcomes[str(call_id)] += 1
                report.outcome_kinds[event.event_type] += 1
                report.doubles.setdefault(str(call_id), []).append(_outcome_detail(event))
        report.doubles = {c: kinds for c, kinds in report.doubles.items() if len(kinds) > 1}
    report.refused = len(report.refusals(report.events) + report.refusals(report.calls))
    sent = {str(e.model_dump().get("research_id")) for _, e, _ in rows}
    report.refused_written = {f"event {a.ident}" for a in report.refusals(report.events)} & {
        f"event {i}" for i in sent
    }
    requests = await read_all(kafka, codec, catalogue.name("calls.requests"))
    keys = {str(e.model_dump().get("idempotency_key")) for _, e, _ in requests}
    report.refused_written |= {f"call {a.ident}" for a in report.refusals(report.calls)} & {
        f"call {k}" for k in keys
    }
    report.lag_after = await lag_settles(kafka, worker_groups(f"{catalogue.prefix}calls"))
    health = await read_all(kafka, codec, catalogue.name("integration.health"))
    assert report.restarted_wall is not None
    report.health_after_restart = sum(
        1
        for _, e, _ in health
        if isinstance(e, HealthChecked) and e.occurred_at > report.restarted_wall
    )
    dlt = await read_all(kafka, codec, catalogue.name("calls.dlt"))
    for _, event, _ in dlt:
        call_id = event.model_dump().get("call_id")
        if call_id in accepted:
            report.dead_letters[str(call_id)] += 1


def _outcome_detail(event: object) -> str:
    """An outcome as the report shows a repeated one: its kind, attempt, and why it gave up."""
    kind = str(getattr(event, "event_type", type(event).__name__))
    failure = getattr(event, "failure", None)
    if failure is not None:  # a dead letter: its reason and last error say why
        return (
            f"{kind} (attempts {failure.attempts}, {failure.reason}: {failure.error_class}: "
            f"{failure.message[:200]})"
        )
    attempt = getattr(event, "attempt", None)
    return kind if attempt is None else f"{kind} (attempt {attempt})"
