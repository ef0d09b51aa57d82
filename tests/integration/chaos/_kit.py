"""Pieces every fault scenario shares: real ``backbone`` processes started and signalled, a local
HTTP service standing in for a provider, clients that record every answer (the oracle's input),
and process gauges (RSS, open descriptors) read from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from infra.kafka.broker import free_port
from streams.inspect import describe_group
from streams.settings import KafkaSettings

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Answer:
    """One HTTP request a client sent, and what it got back."""

    began: float
    ended: float
    status: int  # 0: no HTTP answer (connection error)
    ident: str  # the 2xx answer's id when accepted, else the fresh value the client sent


async def _echo(request: web.Request) -> web.Response:
    await asyncio.sleep(0.01)
    return web.json_response({"ok": True, "path": request.path})


@contextlib.asynccontextmanager
async def provider(handler: Handler = _echo) -> AsyncIterator[str]:
    """A local HTTP service on a free port answering every method and path with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def start_process(
    args: list[str], env: Mapping[str, str], log: Path
) -> asyncio.subprocess.Process:
    """``python -m infra.cli <args>`` with its output appended to ``log``."""
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "infra.cli", *args, env=dict(env),
            stdout=sink, stderr=sink,
        )  # fmt: skip


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 90.0) -> int | None:
    """SIGTERM and wait; its exit code, or None when it had to be killed."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None  # did not stop by itself
    return proc.returncode


async def post_loop(
    url: str,
    body: dict[str, str],
    fresh: str,
    answer_id: str,
    out: list[Answer],
    running: asyncio.Event,
    *,
    pause_s: float = 0.05,
) -> None:
    """Posts one request after another while ``running``; ``fresh`` is a body field given a new
    value each time, ``answer_id`` the field of a 2xx answer that identifies what was written."""
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
            await asyncio.sleep(pause_s if 200 <= status < 300 else 0.2)


def rss_bytes(pid: int) -> int:
    """Resident memory of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_ready(url: str, proc: asyncio.subprocess.Process, timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200; fails at once if ``proc`` exited meanwhile."""
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
        while True:
            assert proc.returncode is None, f"the process exited ({proc.returncode}) while starting"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.5)


#: the consumer groups of the aiokafka call worker under ``[calls] group_id``
def worker_groups(group_id: str) -> list[str]:
    return [f"{group_id}.{stage}" for stage in ("router", "lanes", "retry")]


async def total_lag(kafka: KafkaSettings, groups: list[str]) -> int:
    """Records the groups have not committed past, summed over every partition they committed on."""
    lag = 0
    for group in groups:
        lag += (await describe_group(kafka, group)).total_lag
    return lag


async def lag_settles(kafka: KafkaSettings, groups: list[str], timeout_s: float = 120) -> int:
    """Poll until the groups' lag is 0 (no timing assertion: a generous deadline); the last lag."""
    deadline = time.monotonic() + timeout_s
    lag = await total_lag(kafka, groups)
    while lag and time.monotonic() < deadline:
        await asyncio.sleep(1)
        lag = await total_lag(kafka, groups)
    return lag


@dataclass
class LagPeak:
    """The largest total lag a :class:`LagTrace` saw, and where it was."""

    lag: int = 0
    at_s: float = 0.0
    load1: float = 0.0
    #: ``stage topic[partition]@committed/end`` -> lag, the partitions carrying it (largest first)
    parts: list[tuple[str, int]] = field(default_factory=list)


Offsets = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (committed, end)


class LagTrace:
    """Samples every partition's lag of ``groups`` (committed and end offsets) with the time, the
    box's load and the cores this process used; each sample is a line of ``path`` (a long run's
    trace costs no memory). Kept for the report: the peak, and per stage its first and latest
    offsets, so a stage that commits slower than its topics are written shows as two rates."""

    def __init__(self, kafka: KafkaSettings, groups: list[str], path: Path) -> None:
        self._kafka, self._groups, self.path = kafka, groups, path
        self._began = time.monotonic()
        self._cpu, self._last = time.process_time(), 0.0
        self.peak = LagPeak()
        self.samples = 0
        self._first: dict[str, tuple[float, Offsets]] = {}
        self._latest: dict[str, tuple[float, Offsets]] = {}
        self.path.write_text("t_s\tload1\tcores\ttotal\tper stage\tlagging partitions\n")

    async def sample(self) -> int:
        at = time.monotonic() - self._began
        cpu = time.process_time()
        cores = (cpu - self._cpu) / max(at - self._last, 1e-6)  # this process's CPU share
        self._cpu, self._last = cpu, at
        load1 = os.getloadavg()[0]
        per_stage: dict[str, int] = {}
        lagging: list[tuple[str, int]] = []
        for group in self._groups:
            stage = group.rsplit(".", 1)[-1]
            state = await describe_group(self._kafka, group)
            per_stage[stage] = state.total_lag
            offsets = {
                (p.topic, p.partition): (p.committed, p.end_offset)
                for p in state.lags
                if p.committed is not None
            }
            self._first.setdefault(stage, (at, offsets))
            self._latest[stage] = (at, offsets)
            lagging += [
                (f"{stage} {p.topic.split('.', 1)[-1]}[{p.partition}]@{p.committed}/{p.end_offset}",
                 p.lag)
                for p in state.lags if p.lag
            ]  # fmt: skip
        total = sum(per_stage.values())
        top = sorted(lagging, key=lambda x: -x[1])[:6]
        with self.path.open("a") as sink:
            where = " ".join(f"{n}={lag}" for n, lag in top)
            sink.write(f"{at:.0f}\t{load1:.1f}\t{cores:.2f}\t{total}\t{per_stage}\t{where}\n")
        self.samples += 1
        if total >= self.peak.lag:
            self.peak = LagPeak(total, at, load1, top)
        return total

    def rates(self) -> dict[str, tuple[float, float]]:
        """Per stage, records committed and written per second between the first and latest
        samples (on the partitions both saw committed)."""
        found = {}
        for stage, (t0, first) in self._first.items():
            t1, latest = self._latest[stage]
            common = first.keys() & latest.keys()
            if t1 <= t0 or not common:
                continue
            done = sum(latest[tp][0] - first[tp][0] for tp in common) / (t1 - t0)
            written = sum(latest[tp][1] - first[tp][1] for tp in common) / (t1 - t0)
            found[stage] = (done, written)
        return found

    def report(self) -> str:
        p = self.peak
        where = ", ".join(f"{n}={lag}" for n, lag in p.parts)
        rates = ", ".join(f"{s} {d:.1f}/s of {w:.1f}/s" for s, (d, w) in self.rates().items())
        return (
            f"lag max {p.lag} at {p.at_s:.0f} s (load {p.load1:.1f}) in {where or 'nothing'}; "
            f"committed of written: {rates or 'n/a'}; samples {self.samples}; trace {self.path}"
        )
