"""The broker-outage fault run: gateway and worker processes, a local HTTP provider, steady load
on ``/v1/events`` and ``/v1/calls``; the broker is SIGTERMed, kept down, and started again with
its state. :func:`run_outage` returns what happened; the tests hold it against the oracle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from infra.kafka.broker import free_port
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.events.health import HealthChecked
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import TERMINAL, TopicReader
from tests.integration.outage._broker import OwnBroker, eventually
from tests.integration.webhooks._kit import read_all

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

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
class Answer:
    began: float
    ended: float
    status: int  # 0: no HTTP answer (connection error)
    ident: str


@dataclass
class FaultReport:
    down_s: float
    events: list[Answer] = field(default_factory=list)
    calls: list[Answer] = field(default_factory=list)
    stopped_at: float = 0.0  # broker fully stopped
    restarting_at: float = 0.0  # broker start began
    restarted_wall: datetime | None = None
    health_after_restart: int = 0  # the worker's health loop wrote these after the outage
    lost_events: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # terminal events per accepted call
    outcome_kinds: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)  # calls.dlt records per call
    log_bytes: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def accepted(self, answers: list[Answer]) -> list[Answer]:
        return [a for a in answers if 200 <= a.status < 300]

    def while_down(self, answers: list[Answer]) -> list[Answer]:
        """Answers to requests sent and answered entirely while the broker was stopped."""
        return [a for a in answers if a.began > self.stopped_at and a.ended < self.restarting_at]

    def summary(self) -> str:
        accepted_calls = {a.ident for a in self.accepted(self.calls)}
        per_call = Counter(self.outcomes[c] for c in accepted_calls)
        return (
            f"outage {self.down_s:.0f} s: events {len(self.accepted(self.events))} accepted "
            f"of {len(self.events)}, lost {len(self.lost_events)}; calls "
            f"{len(accepted_calls)} accepted, outcomes per call {dict(sorted(per_call.items()))}, "
            f"kinds {dict(self.outcome_kinds)}, dead letters per call "
            f"{dict(Counter(self.dead_letters.values()))}; statuses events "
            f"{dict(Counter(a.status for a in self.events))} calls "
            f"{dict(Counter(a.status for a in self.calls))}; health checks after the restart "
            f"{self.health_after_restart}; logs {self.log_bytes}"
        )


@contextlib.asynccontextmanager
async def _provider() -> AsyncIterator[str]:
    """The called service: answers every POST with JSON after a short pause."""

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _process(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "infra.cli", *args, env=env,
            stdout=sink, stderr=sink,
        )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process, timeout_s: float = 90.0) -> int | None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None  # did not stop by itself
    return proc.returncode


async def _client(
    url: str,
    body: dict[str, str],
    fresh: str,
    answer_id: str,
    out: list[Answer],
    running: asyncio.Event,
) -> None:
    """Posts one request after another; ``fresh`` is a body field given a new value each time,
    ``answer_id`` the field of a 2xx answer that identifies what was written."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        n = 0
        while running.is_set():
            n += 1
            began = time.monotonic()
            ident = f"{uuid.uuid4().hex[:12]}-{n}"
            payload = {**body, fresh: ident}
            try:
                async with http.post(url, json=payload, headers=AUTH) as response:
                    status = response.status
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 0, {}
            if 200 <= status < 300:
                ident = str(answer[answer_id])
            out.append(Answer(began, time.monotonic(), status, ident))
            await asyncio.sleep(0.05 if 200 <= status < 300 else 0.2)


async def run_outage(
    tmp_path: Path,
    codec: Codec,
    registry: RegistrySettings,
    catalogue: Catalogue,
    down_s: float,
) -> FaultReport:
    report = FaultReport(down_s)
    broker = OwnBroker(tmp_path / "kafka")
    await broker.start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, linger_ms=0)
    await apply_catalogue(kafka, catalogue)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {"gateway": tmp_path / "gateway.log", "worker": tmp_path / "worker.log"}
    async with _provider() as provider:
        config = tmp_path / "backbone.toml"
        config.write_text(WORKER_CONFIG.format(group=f"{catalogue.prefix}calls", provider=provider))
        env = {
            **os.environ,
            "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
            "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
            "BACKBONE_CONFIG": str(config),
            "BACKBONE_GATEWAY_PORT": str(port),
            "BACKBONE_GATEWAY_TOKENS": f"fault={TOKEN}",
            "BACKBONE_GATEWAY_RATE": "100000",
            "BACKBONE_GATEWAY_BURST": "100000",
        }
        gateway = await _process(["gateway"], env, logs["gateway"])
        worker = await _process(["worker"], env, logs["worker"])
        running = asyncio.Event()
        running.set()
        clients: list[asyncio.Task[None]] = []
        try:

            async def ready() -> bool:
                assert gateway.returncode is None, "the gateway exited while starting"
                try:
                    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout_s=120)
            step = {"research_id": "", "step_id": "s1", "step_kind": "search"}
            call = {"service": "provider", "operation": "/echo", "idempotency_key": ""}
            clients = [
                *(
                    asyncio.create_task(
                        _client(
                            f"{base}/v1/events/research.step_started",
                            step,
                            "research_id",
                            "event_id",
                            report.events,
                            running,
                        )
                    )
                    for _ in range(3)
                ),
                *(
                    asyncio.create_task(
                        _client(
                            f"{base}/v1/calls",
                            call,
                            "idempotency_key",
                            "call_id",
                            report.calls,
                            running,
                        )
                    )
                    for _ in range(2)
                ),
            ]
            await asyncio.sleep(8)  # steady load before the outage
            await broker.stop()  # SIGTERM, then wait for the process to end
            report.stopped_at = time.monotonic()
            await asyncio.sleep(down_s)
            report.restarting_at = time.monotonic()
            report.restarted_wall = datetime.now(UTC)
            await broker.start()

            async def recovered() -> bool:
                recent = [a for a in report.events if a.began > report.restarting_at]
                return any(200 <= a.status < 300 for a in recent)

            await eventually(recovered, timeout_s=180)
            await asyncio.sleep(8)  # steady load after recovery
            running.clear()
            await asyncio.gather(*clients)
            await _settle(report, kafka, codec, catalogue)
        finally:
            running.clear()
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            report.exit_codes["gateway"] = await _stop(gateway)
            report.exit_codes["worker"] = await _stop(worker)
            await broker.stop()
    report.log_bytes = {name: path.stat().st_size for name, path in logs.items()}
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
        for event in results.events:
            call_id = getattr(event, "call_id", None)
            if event.event_type in TERMINAL and call_id in accepted:
                report.outcomes[str(call_id)] += 1
                report.outcome_kinds[event.event_type] += 1
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
