"""A fleet of real ``backbone worker`` processes under a stream of calls, with a fault schedule
(kills, joins and leaves) and everything the oracle needs recorded: each call published, each
execution at the provider (per ``Idempotency-Key``), each outcome in ``calls.results``, every
committed offset of the worker's groups as it moved, the exit code of every stopped worker, and
the metrics projection's figures (run live in this process, beside the fleet)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from agents.projections import MetricsProjection
from streams import Subscriber
from streams.codec import Codec
from streams.events.calls import CallRequested
from streams.events.monitoring import MetricsWindow
from streams.inspect import describe_group
from streams.producer import Publisher
from streams.projections import ProjectionRunner
from streams.rollup import rollup
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import TERMINAL, TopicReader, request, terminal
from tests.integration.chaos._kit import (
    lag_settles,
    provider,
    start_process,
    stop_process,
    worker_groups,
)
from tests.integration.chaos._postmortem import write_postmortem
from tests.integration.webhooks._kit import read_all

WORKER_CONFIG = """
[calls]
group_id = "{group}"
runtime = "{runtime}"
max_in_flight = 32
session_timeout_s = 6.0
rebalance_timeout_s = 20.0
default_timeout_s = 10.0
commit_interval_s = 0.5
health_interval_s = 2.0

[calls.breaker]
open_wait_s = 1.0

[[calls.services]]
name = "ext"
kind = "http"
base_url = "{url}"
max_concurrency = 16
timeout_s = 10.0

[calls.services.rate_limit]
rate = 5000.0
burst = 500
"""

Proc = asyncio.subprocess.Process


@dataclass
class Fleet:
    """The running workers; a fault schedule starts, signals and replaces them. Each worker logs
    to its own file; :meth:`add` returns once the worker said "ready" (its signal handlers are in
    place), so faults hit working processes, not ones still importing."""

    env: dict[str, str]
    logs: Path
    workers: list[Proc] = field(default_factory=list)
    stopped: list[tuple[str, int | None]] = field(default_factory=list)  # signal, exit code
    started: list[Proc] = field(default_factory=list)

    async def add(self) -> None:
        log = self.logs / f"worker-{len(self.started)}.log"
        proc = await start_process(["worker"], self.env, log)
        self.started.append(proc)
        deadline = time.monotonic() + 300  # imports alone take minutes on the loaded box
        while b"\nready\n" not in b"\n" + log.read_bytes():
            assert proc.returncode is None, f"a worker exited while starting: see {log}"
            assert time.monotonic() < deadline, f"a worker did not get ready: see {log}"
            await asyncio.sleep(0.2)
        self.workers.append(proc)

    async def remove(self, sig: signal.Signals, index: int = -1) -> None:
        """Signal one worker and wait for it to end (SIGTERM: a clean stop, 90 s at most)."""
        proc = self.workers.pop(index)
        if proc.returncode is not None:
            self.stopped.append(("died by itself", proc.returncode))
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 90)
            self.stopped.append((sig.name, proc.returncode))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            self.stopped.append((sig.name, None))  # did not stop by itself

    async def replace(self, sig: signal.Signals) -> None:
        await self.remove(sig, 0)
        await self.add()

    async def stop_all(self) -> None:
        for proc in self.started:
            await stop_process(proc, 60)


Schedule = Callable[[Fleet, asyncio.Event], Awaitable[None]]


@dataclass
class FleetReport:
    published: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # terminal events per call id
    kinds: Counter[str] = field(default_factory=Counter)
    unknown: set[str] = field(default_factory=set)  # dead-lettered OutcomeUnknownError
    executed: Counter[str] = field(default_factory=Counter)  # provider requests per key
    succeeded: set[str] = field(default_factory=set)
    stopped: list[tuple[str, int | None]] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)  # committed offsets that moved back
    commits_seen: int = 0
    lag_after: int = -1
    metrics: dict[str, int] = field(default_factory=dict)  # the projection's rolled-up figures
    seconds: float = 0.0
    postmortem: Path | None = None  # per-record dump of the calls that failed the oracle

    def suspects(self) -> set[str]:
        """Call ids (and idempotency keys) that fail the oracle's per-call checks."""
        found = {c for c in self.published if self.outcomes[c] != 1}
        found |= {k for k, n in self.executed.items() if n > 1}
        found |= {c for c in self.succeeded if self.executed[c] != 1}
        return found

    def summary(self) -> str:
        per_call = Counter(self.outcomes[c] for c in self.published)
        return (
            f"{len(self.published)} calls in {self.seconds:.0f} s; outcomes per call "
            f"{dict(sorted(per_call.items()))}; kinds {dict(self.kinds)}; unknown outcome "
            f"(in flight at a kill) {len(self.unknown)}; provider requests per key "
            f"{dict(Counter(self.executed.values()))}; workers stopped {Counter(self.stopped)}; "
            f"committed offsets observed {self.commits_seen}, backwards {len(self.backwards)}; "
            f"lag after {self.lag_after}; metrics projection {self.metrics}"
        )

    def check(self) -> None:
        """The oracle shared by every fleet scenario."""
        print("\n" + self.summary())
        dump = f" (per-record post-mortem: {self.postmortem})" if self.postmortem else ""
        missing = {c for c in self.published if self.outcomes[c] == 0}
        assert not missing, (
            f"{len(missing)} of {len(self.published)} calls have no outcome: "
            f"{sorted(missing)[:5]}{dump}"
        )
        repeated = {c: n for c, n in self.outcomes.items() if n > 1}
        assert not repeated, f"calls with more than one outcome: {list(repeated.items())[:5]}{dump}"
        twice = {k: n for k, n in self.executed.items() if n > 1}
        assert not twice, (
            f"the provider was called more than once for {list(twice.items())[:5]}{dump}"
        )
        assert all(self.executed[c] == 1 for c in self.succeeded), (
            f"a success never reached it{dump}"
        )
        assert not self.backwards, f"committed offsets moved back: {self.backwards[:5]}"
        assert self.lag_after == 0, f"the workers' lag stayed at {self.lag_after}"
        bad = [(s, c) for s, c in self.stopped if s != "SIGKILL" and c != 0]
        assert not bad, f"workers that died by themselves or did not stop cleanly: {bad}"
        assert self.metrics.get("successes") == len(self.succeeded), (
            f"the metrics projection counts {self.metrics.get('successes')} successes for "
            f"{len(self.succeeded)} succeeded calls"
        )
        assert self.metrics.get("dead_lettered") == self.kinds["call.dead_lettered"]


async def _publish_stream(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    total: int,
    rate: float,
    out: set[str],
) -> None:
    """``total`` calls at about ``rate`` per second, each recorded once the broker acked it."""
    batch = max(1, int(rate / 10))
    async with Publisher(kafka, codec, catalogue) as publisher:
        sent = 0
        while sent < total:
            began = time.monotonic()
            calls: list[CallRequested] = []
            for _ in range(min(batch, total - sent)):
                call = request("ext").model_copy(update={"operation": "/do"})
                calls.append(call)
            await publisher.publish_many(calls)
            out.update(c.call_id for c in calls)
            sent += len(calls)
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))


async def _watch_commits(
    kafka: KafkaSettings, groups: list[str], report: FleetReport, running: asyncio.Event
) -> None:
    """Poll the committed offsets; any that moves back is recorded."""
    last: dict[tuple[str, str, int], int] = {}
    while running.is_set():
        for group in groups:
            with contextlib.suppress(Exception):  # a poll during a rebalance may fail: next one
                state = await describe_group(kafka, group)
                for lag in state.lags:
                    if lag.committed is None:
                        continue
                    key = (group, lag.topic, lag.partition)
                    before = last.get(key)
                    if before is not None and lag.committed < before:
                        report.backwards.append(f"{key}: {before} -> {lag.committed}")
                    if before != lag.committed:
                        report.commits_seen += 1
                    last[key] = max(lag.committed, before or 0)
        await asyncio.sleep(0.5)


async def _metrics(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> dict[str, int]:
    windows: list[MetricsWindow] = []
    async with Subscriber(
        kafka, codec, catalogue, ["monitoring.metrics"], None, stop_at_end=True
    ) as sub:
        async for received in sub:
            if isinstance(received.event, MetricsWindow):
                windows.append(received.event)
    figures = rollup(windows).get("ext")
    if figures is None:
        return {}
    return {"successes": figures.successes, "dead_lettered": figures.dead_lettered}


async def run_fleet(
    tmp_path: Path,
    kafka: KafkaSettings,
    codec: Codec,
    registry: RegistrySettings,
    catalogue: Catalogue,
    *,
    total: int,
    rate: float,
    workers: int,
    schedule: Schedule,
    runtime: str | None = None,
) -> FleetReport:
    """Publish ``total`` calls at ``rate``/s to ``workers`` workers while ``schedule`` runs (it is
    told when the stream has ended); then settle and read everything back."""
    report = FleetReport()
    began = time.monotonic()

    async def work(req: web.Request) -> web.Response:
        report.executed[req.headers["Idempotency-Key"]] += 1
        await asyncio.sleep(0.005)
        return web.json_response({"ok": True})

    group = f"{catalogue.prefix}calls"
    runtime = runtime or os.environ.get("BACKBONE_CHAOS_RUNTIME", "aiokafka")
    # the Faust app commits in one group named after group_id (the stages use three of their own):
    # without it the commit and lag checks of a Faust fleet would watch groups nobody commits in
    groups = worker_groups(group) + ([group] if runtime == "faust" else [])
    config = tmp_path / "backbone.toml"
    metrics = ProjectionRunner(
        kafka,
        codec,
        catalogue,
        MetricsProjection(window_s=5, grace_s=1),
        tmp_path / "store",
        group_id=f"{catalogue.prefix}metrics",
        flush_interval_s=1.0,
    )
    running = asyncio.Event()
    running.set()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_SCHEMA_REGISTRY_URL": registry.url,
        "BACKBONE_CONFIG": str(config),
    }
    fleet = Fleet(env, tmp_path)
    async with (
        provider(work) as url,
        TopicReader(kafka, codec, catalogue.name("calls.results"), committed=True) as results,
    ):
        # BACKBONE_CHAOS_RUNTIME=faust runs the fleet on the Faust runtime
        config.write_text(WORKER_CONFIG.format(group=group, url=url, runtime=runtime))
        for _ in range(workers):
            await fleet.add()
        projection = asyncio.create_task(metrics.run())
        watcher = asyncio.create_task(_watch_commits(kafka, groups, report, running))
        stream_done = asyncio.Event()
        stream = asyncio.create_task(
            _publish_stream(kafka, codec, catalogue, total, rate, report.published)
        )
        stream.add_done_callback(lambda _: stream_done.set())
        try:
            await schedule(fleet, stream_done)
            for proc in fleet.workers:
                assert proc.returncode is None, f"a worker exited by itself ({proc.returncode})"
            await stream

            def settled(reader: TopicReader) -> bool:
                return report.published <= {e.call_id for e in terminal(reader)}

            with contextlib.suppress(AssertionError):  # the oracle names what is missing
                await results.wait_for(settled, timeout=max(180, total / 50))
            await asyncio.sleep(3)  # a duplicate outcome would show up now
            await results.poll()
            report.lag_after = await lag_settles(kafka, groups)
        finally:
            running.clear()
            for task in (stream, watcher):
                task.cancel()
            await asyncio.gather(stream, watcher, return_exceptions=True)
            report.stopped = list(fleet.stopped)
            await fleet.stop_all()
        # the count comes from a fresh read of the whole topic up to its end, not from the live
        # reader (on the loaded box a live reader once fell far behind what the topic held)
        for _, event, _ in await read_all(kafka, codec, catalogue.name("calls.results")):
            call_id = getattr(event, "call_id", None)
            if event.event_type in TERMINAL and call_id in report.published:
                report.outcomes[call_id] += 1
                report.kinds[event.event_type] += 1
                if event.event_type == "call.succeeded":
                    report.succeeded.add(call_id)
                elif getattr(event, "failure", None) is not None and (
                    event.failure.error_class == "OutcomeUnknownError"  # type: ignore[attr-defined]
                ):
                    report.unknown.add(call_id)
        if suspects := report.suspects():  # written only when the oracle will fail
            report.postmortem = await write_postmortem(
                kafka, codec, catalogue, suspects, tmp_path / "postmortem.txt"
            )
        try:
            want = len(report.succeeded)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                report.metrics = await _metrics(kafka, codec, catalogue)
                if report.metrics.get("successes", 0) >= want:
                    await asyncio.sleep(3)  # a double count would show up now
                    report.metrics = await _metrics(kafka, codec, catalogue)
                    break
                await asyncio.sleep(1)
        finally:
            projection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projection
    report.seconds = time.monotonic() - began
    return report
