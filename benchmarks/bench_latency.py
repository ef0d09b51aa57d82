"""Latency a call through the backbone adds over a direct call, its CPU cost, and where time goes.

One run, one broker, one local provider (``benchmarks._provider``: answers at once):

- **floor**: this process calls the provider directly with aiohttp;
- **gateway**: ``POST /v1/calls?wait=30s`` to ``backbone gateway`` in its own process; the call
  runs in ``backbone worker`` (its own process, ``http`` connector) and the gateway answers with
  the outcome;
- **sdk**: this process publishes ``call.requested`` with :class:`~streams.producer.Publisher` and
  waits for the outcome in ``calls.results`` (the gateway's :class:`ReplyWaiter`), the
  request-reply a partner team writes with the SDK.

Each is driven open loop at 1, 100 and 1,000 calls/s (``BENCH_LATENCY_RATES``) for
``BENCH_LATENCY_SECONDS`` (3 s, at least 10 calls; quick: 0.5 s, at least 3). Reported:
p50/p99/p99.9 of each path and the **added latency** (the path's percentile minus the floor's), **CPU per call** of the worker
process (its user+system CPU time during the run / calls, idle work included), and a per-hop
breakdown from the records' timestamps (``CreateTime``, ms): client -> request record -> lane
record (router) -> claim record (lane, ledger) -> provider -> result record -> reply received.
Throughput of the pipeline against a raw aiokafka passthrough comes from :mod:`bench_calls`
(``BENCH_LATENCY_THROUGHPUT=0`` skips it). :func:`figures` returns every figure as a dict.
``BENCH_LATENCY_PROFILE=out.prof`` runs the worker under cProfile (the file is written when it
stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import bench_calls
from benchmarks._harness import Row, Stat, progress, quick, scaled
from benchmarks._servers import TOKEN, gateway_env
from connectors.calls_api import ReplyWaiter
from infra.kafka.broker import LocalBroker, free_port
from infra.registry.server import RegistryServer
from streams.admin import apply_catalogue, partitions
from streams.codec import Codec
from streams.events.calls import CallRequested, CallStarted, CallSucceeded
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "0.5" if quick() else "3"))
RATES = tuple(int(r) for r in os.environ.get("BENCH_LATENCY_RATES", "1,100,1000").split(","))
MIN_CALLS = scaled(10, 3)
WARMUP = 20
MAX_IN_FLIGHT = 2000
TIMEOUT_S = 30.0
SERVICE = "echo"
PAYLOAD = {"messages": [{"role": "user", "content": "hello"}]}
PATHS = ("floor", "gateway", "sdk")
#: The hops of a call's timeline, from the client's clock and the records' timestamps.
HOPS = (
    ("ingress", "client sent -> request record"),
    ("router", "request record -> lane record"),
    ("lane", "lane record -> claim record"),
    ("claim", "claim record -> provider answered"),
    ("outcome", "provider answered -> result record"),
    ("reply", "result record -> reply received"),
)
Caller = Callable[[], Awaitable[str | None]]


@dataclass
class Run:
    """One path at one rate."""

    calls: int = 0
    failures: int = 0
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    cpu_worker_s: float = 0.0
    cpu_gateway_s: float = 0.0
    sent: dict[str, float] = field(default_factory=dict)  # call id -> wall clock
    received: dict[str, float] = field(default_factory=dict)


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99.9 of 300 values is the largest: honest, not interpolated)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _open_loop(
    call: Caller, rate: int, n: int, cpu: Callable[[], tuple[float, float]]
) -> Run:
    run = Run(calls=n)
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one() -> None:
        async with slots:
            sent, began = time.time(), time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    call_id = await call()
            except (TimeoutError, aiohttp.ClientError, OSError):
                call_id = None
            if call_id is None:
                run.failures += 1
                return
            run.latencies.append(time.perf_counter() - began)
            run.sent[call_id], run.received[call_id] = sent, time.time()

    worker0, gateway0 = cpu()
    began = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    run.elapsed_s = time.perf_counter() - began
    worker1, gateway1 = cpu()
    run.cpu_worker_s, run.cpu_gateway_s = worker1 - worker0, gateway1 - gateway0
    return run


# --- the three paths ------------------------------------------------------------------------------


def _floor(http: aiohttp.ClientSession, provider: str) -> Caller:
    async def call() -> str | None:
        async with http.post(f"{provider}/chat", json=PAYLOAD) as response:
            await response.read()
            return uuid.uuid4().hex if response.status == 200 else None

    return call


def _through_gateway(http: aiohttp.ClientSession, gateway: str) -> Caller:
    body = {"service": SERVICE, "operation": "chat", "payload": PAYLOAD}
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def call() -> str | None:
        async with http.post(f"{gateway}/v1/calls?wait=30s", json=body, headers=auth) as response:
            reply = await response.json()
        if response.status != 200 or reply.get("status") != "succeeded":
            return None
        return str(reply["call_id"])

    return call


def _through_sdk(publisher: Publisher, waiter: ReplyWaiter) -> Caller:
    payload = json.dumps(PAYLOAD)

    async def call() -> str | None:
        call_id = uuid.uuid4().hex
        request = CallRequested(
            call_id=call_id,
            service=SERVICE,
            operation="chat",
            payload=payload,
            idempotency_key=call_id,
            source="bench",
        )
        outcome = waiter.expect(call_id)
        try:
            await publisher.publish(request, topic="calls.requests")
            event = await outcome
        finally:
            waiter.forget(call_id)
        return call_id if isinstance(event, CallSucceeded) else None

    return call


# --- the per-hop breakdown ------------------------------------------------------------------------


async def _timeline(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> dict[str, dict[str, float]]:
    """For every call id: when each of its records was written (s), and the provider answered."""
    names = {
        catalogue.name("calls.requests"): "request",
        catalogue.name("calls.lane.normal"): "lane",
        catalogue.name("calls.claims"): "claim",
        catalogue.name("calls.results"): "result",
    }
    found = await partitions(kafka, list(names))
    tps = [TopicPartition(t, p) for t in names for p in found[t]]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    times: dict[str, dict[str, float]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if record.value is None:
                        continue
                    event = await codec.decode(record.value)
                    call_id = getattr(event, "call_id", None)
                    if call_id is None:
                        continue
                    slot = times.setdefault(call_id, {})
                    kind = names[tp.topic]
                    if kind == "claim" and not isinstance(event, CallStarted):
                        continue
                    if kind == "result":
                        if not isinstance(event, CallSucceeded):
                            continue
                        if event.response:
                            slot["provider"] = json.loads(event.response)["at_ns"] / 1e9
                    slot.setdefault(kind, record.timestamp / 1000)
    finally:
        await consumer.stop()
    return times


def _hops(run: Run, times: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Milliseconds each hop took, per call of the run that has a complete timeline."""
    hops: dict[str, list[float]] = {name: [] for name, _ in HOPS}
    order = ("sent", "request", "lane", "claim", "provider", "result", "received")
    for call_id, sent in run.sent.items():
        stamps = {**times.get(call_id, {}), "sent": sent, "received": run.received[call_id]}
        if not all(k in stamps for k in order):
            continue
        for (name, _), a, b in zip(HOPS, order, order[1:], strict=False):
            hops[name].append((stamps[b] - stamps[a]) * 1000)
    return hops


# --- running it -----------------------------------------------------------------------------------


def _config(provider: str) -> str:
    return f"""
[[calls.services]]
name = "{SERVICE}"
kind = "http"
base_url = "{provider}"
max_concurrency = 64
timeout_s = 10
[calls.services.rate_limit]
rate = 1000000.0
burst = 100000
"""


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _spawn(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """``python -m *args`` in its own process, its output in ``log`` (shown if it fails)."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )


def _profiled() -> list[str]:
    """``BENCH_LATENCY_PROFILE=out.prof``: the worker runs under cProfile (written at its stop)."""
    out = os.environ.get("BENCH_LATENCY_PROFILE")
    return ["cProfile", "-o", out, "-m"] if out else []


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _healthy(proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
    """Wait (up to 180 s: the box may be loaded) until ``url`` answers 200."""
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up: {_tail(log)}")


async def _until_served(call: Caller, timeout_s: float = 180.0) -> None:
    """Wait until a call goes through (the worker joined its groups), then warm up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with asyncio.timeout(10):
                if await call() is not None:
                    break
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("no call went through the worker")
        await asyncio.sleep(0.5)
    for _ in range(WARMUP):
        await call()


async def _measure(kafka: KafkaSettings, registry: RegistrySettings) -> dict[str, Any]:
    catalogue = Catalogue(prefix=f"bench-lat-{uuid.uuid4().hex[:6]}.")
    await apply_catalogue(kafka, catalogue, serving=True)
    provider_port, gateway_port = free_port(), free_port()
    provider = f"http://127.0.0.1:{provider_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    procs: list[asyncio.subprocess.Process] = []
    runs: dict[tuple[str, int], Run] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        config = tmp / "backbone.toml"
        config.write_text(_config(provider))
        if True:
            env = gateway_env(
                kafka.bootstrap,
                gateway_port,
                catalogue.prefix,
                BACKBONE_CONFIG=str(config),
                BACKBONE_SCHEMA_REGISTRY_URL=registry.url,
            )
            provider_proc = await _spawn(
                ["benchmarks._provider", str(provider_port)], env, tmp / "provider.log"
            )
            procs.append(provider_proc)
            worker = await _spawn([*_profiled(), "infra.cli", "worker"], env, tmp / "worker.log")
            procs.append(worker)
            gateway_proc = await _spawn(["infra.cli", "gateway"], env, tmp / "gateway.log")
            procs.append(gateway_proc)
            progress("latency: starting the provider, `backbone worker` and `backbone gateway`")
            await _healthy(provider_proc, f"{provider}/healthz", tmp / "provider.log")
            await _healthy(gateway_proc, f"{gateway}/healthz", tmp / "gateway.log")

            def cpu() -> tuple[float, float]:
                return _cpu_s(worker.pid), _cpu_s(gateway_proc.pid)

            async with (
                RegistryClient(registry) as client,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)) as http,
                Publisher(kafka, Codec(client), catalogue) as publisher,
            ):
                codec = Codec(client)
                waiter = ReplyWaiter(kafka, codec, catalogue.name("calls.results"))
                await waiter.start()
                try:
                    callers = {
                        "floor": _floor(http, provider),
                        "gateway": _through_gateway(http, gateway),
                        "sdk": _through_sdk(publisher, waiter),
                    }
                    progress(f"latency: until a call goes through, then {WARMUP} warm-up calls "
                             "per path")  # fmt: skip
                    for caller in callers.values():
                        await _until_served(caller)
                    for rate in RATES:
                        n = max(MIN_CALLS, int(rate * SECONDS))
                        progress(f"latency: {n} calls at {rate}/s on each of {', '.join(PATHS)}")
                        for path in PATHS:
                            runs[path, rate] = await _open_loop(callers[path], rate, n, cpu)
                finally:
                    await waiter.stop()
                progress("latency: the per-hop timeline from the records")
                times = await _timeline(kafka, codec, catalogue)
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return _figures(runs, times)


def _figures(
    runs: dict[tuple[str, int], Run], times: dict[str, dict[str, float]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (path, rate), run in runs.items():
        pre = f"{path}.{rate}"
        ms = [s * 1000 for s in run.latencies]
        out[f"{pre}.calls"] = run.calls
        out[f"{pre}.failures"] = run.failures
        out[f"{pre}.achieved_per_s"] = run.calls / run.elapsed_s if run.elapsed_s else 0.0
        for q, name in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
            out[f"{pre}.{name}_ms"] = _quantile(ms, q)
        if path != "floor":
            ok = max(1, run.calls - run.failures)
            out[f"{pre}.cpu_per_call_us"] = run.cpu_worker_s / ok * 1e6
            out[f"{pre}.gateway_cpu_per_call_us"] = run.cpu_gateway_s / ok * 1e6
            hops = _hops(run, times)
            for name, values in hops.items():
                out[f"{pre}.hop.{name}.p50_ms"] = _quantile(values, 0.5)
                out[f"{pre}.hop.{name}.p99_ms"] = _quantile(values, 0.99)
    for (path, rate), _ in runs.items():
        if path == "floor":
            continue
        for name in ("p50", "p99", "p99.9"):
            out[f"{path}.{rate}.added_{name}_ms"] = (
                out[f"{path}.{rate}.{name}_ms"] - out[f"floor.{rate}.{name}_ms"]
            )
    return out


def _saturated(figures: dict[str, Any], prefix: str, rate: int) -> bool:
    """The path did not keep up with the offered rate (or the floor did not): its latency is
    queueing in this box, and the added latency is not meaningful."""
    return any(
        figures[f"{p}.failures"] > 0 or figures[f"{p}.achieved_per_s"] < 0.8 * rate
        for p in (prefix, f"floor.{rate}")
    )


def _print(figures: dict[str, Any]) -> None:
    load = os.getloadavg()
    print(f"added latency, open loop, {SECONDS:g} s per rate (load {load[0]:.1f} {load[1]:.1f}):")
    for rate in RATES:
        floor = f"floor.{rate}"
        print(
            f"  {rate:>5}/s baseline direct aiohttp : p50 {figures[floor + '.p50_ms']:6.1f}  "
            f"p99 {figures[floor + '.p99_ms']:6.1f}  p99.9 {figures[floor + '.p99.9_ms']:6.1f} ms"
        )
        for path, label in (("gateway", "POST /v1/calls?wait"), ("sdk", "SDK request-reply")):
            p = f"{path}.{rate}"
            print(
                f"  {rate:>5}/s {label:<23}: p50 {figures[p + '.p50_ms']:6.1f}  "
                f"p99 {figures[p + '.p99_ms']:6.1f}  p99.9 {figures[p + '.p99.9_ms']:6.1f} ms; "
                f"added p50 {figures[p + '.added_p50_ms']:6.1f}  p99 {figures[p + '.added_p99_ms']:6.1f}"
                f"  p99.9 {figures[p + '.added_p99.9_ms']:6.1f} ms; "
                f"CPU/call worker {figures[p + '.cpu_per_call_us']:5.0f} us, "
                f"gateway {figures[p + '.gateway_cpu_per_call_us']:5.0f} us; "
                f"{figures[p + '.achieved_per_s']:.0f}/s, failed {figures[p + '.failures']}"
                + (
                    "  SATURATED (not sustained: figures are queueing)"
                    if _saturated(figures, p, rate)
                    else ""
                )
            )
    if 100 in RATES:
        g = "gateway.100"
        print(
            f"  targets at 100/s (wait mode): added p50 {figures[g + '.added_p50_ms']:.1f} ms "
            f"(<= 15), added p99 {figures[g + '.added_p99_ms']:.1f} ms (<= 50), "
            f"worker CPU/call {figures[g + '.cpu_per_call_us']:.0f} us (<= 150)"
        )
    print("where the time goes (p50 / p99 ms per hop, record timestamps):")
    for rate in RATES:
        for path in ("gateway", "sdk"):
            p = f"{path}.{rate}.hop"
            hops = "  ".join(
                f"{name} {figures[f'{p}.{name}.p50_ms']:.1f}/{figures[f'{p}.{name}.p99_ms']:.0f}"
                for name, _ in HOPS
            )
            print(f"  {rate:>5}/s {path:<7}: {hops}")
    print("  hops: " + "; ".join(f"{name} = {what}" for name, what in HOPS))
    if "throughput.ratio_raw" in figures:
        print(
            f"throughput: calls {figures['throughput.calls_per_s']:.0f}/s, raw aiokafka "
            f"passthrough {figures['throughput.raw_per_s']:.0f}/s, ratio "
            f"{figures['throughput.ratio_raw']:.2f} (target >= 0.25); vanilla Faust "
            f"{figures['throughput.faust_per_s']:.0f}/s, ratio {figures['throughput.ratio_faust']:.2f}"
            " (target >= 1.0)"
        )


async def _figures_on(bootstrap: str | None, *, throughput: bool) -> dict[str, Any]:
    broker: LocalBroker | None = None
    if not bootstrap:
        broker = LocalBroker()
        await asyncio.to_thread(broker.start, 300.0)
        bootstrap = broker.bootstrap
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-latency")
    server = RegistryServer(kafka, topic=f"bench-lat-{uuid.uuid4().hex[:6]}._schemas", port=0)
    await server.start()
    try:
        registry = RegistrySettings(url=server.url)
        figures = await _measure(kafka, registry)
        if throughput:
            plain = KafkaSettings(bootstrap=bootstrap, client_id="bench-calls", compression="none")
            rates = await bench_calls._run(plain, registry)
            figures["throughput.calls_per_s"] = rates["calls end to end"]
            figures["throughput.raw_per_s"] = rates["raw aiokafka passthrough"]
            figures["throughput.faust_per_s"] = rates["vanilla Faust passthrough"]
            figures["throughput.ratio_raw"] = (
                rates["calls end to end"] / rates["raw aiokafka passthrough"]
            )
            figures["throughput.ratio_faust"] = (
                rates["calls end to end"] / rates["vanilla Faust passthrough"]
            )
        figures["load_1m"] = os.getloadavg()[0]
        return figures
    finally:
        await server.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)


def figures(*, throughput: bool | None = None) -> dict[str, Any]:
    """Every figure of one run (on ``BACKBONE_KAFKA_BOOTSTRAP``, or a broker started for it).
    ``throughput``: also run :mod:`bench_calls` (default: unless ``BENCH_LATENCY_THROUGHPUT=0``)."""
    if throughput is None:
        throughput = os.environ.get("BENCH_LATENCY_THROUGHPUT", "1") != "0"
    bootstrap = os.environ.get("BACKBONE_KAFKA_BOOTSTRAP")
    return asyncio.run(_figures_on(bootstrap, throughput=throughput))


def rows() -> list[Row]:
    """The harness's rows (``python -m benchmarks``); throughput is bench_calls' own rows there."""
    found = figures(throughput=False)
    _print(found)
    out: list[Row] = []
    for rate in RATES:
        for path, label in (("gateway", "POST /v1/calls?wait"), ("sdk", "SDK request-reply")):
            p, judged = f"{path}.{rate}", rate == 100 and path == "gateway"
            params = {"rate_per_s": rate, "calls": found[f"{p}.calls"],
                      "failed": found[f"{p}.failures"], "seconds": SECONDS,
                      "provider": "local aiohttp, answers at once",
                      "saturated": _saturated(found, p, rate)}  # fmt: skip
            for q, target in (("p50", "added <= 15 ms"), ("p99", "added <= 50 ms")):
                out.append(
                    Row(f"calls latency {q}: {label} at {rate}/s", "ms",
                        Stat.of(found[f"{p}.{q}_ms"]), Stat.of(found[f"floor.{rate}.{q}_ms"]),
                        "direct aiohttp call", params, target=target if judged else "")
                )  # fmt: skip
            out.append(
                Row(f"calls worker CPU per call: {label} at {rate}/s", "us",
                    Stat.of(found[f"{p}.cpu_per_call_us"]), params=params,
                    target="<= 150 us" if judged else "")
            )  # fmt: skip
    return out


def main() -> None:
    _print(figures())


if __name__ == "__main__":
    main()
