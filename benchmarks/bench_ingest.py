"""The ingest edge against a bare aiohttp handler, with 1 and 2 gateway processes, in one run.

Two endpoints: ``POST /v1/events/call.requested`` (bearer token, strict validation, Avro, a 202
only after Kafka acknowledged) and verified webhooks ``POST /webhooks/bench`` (Standard Webhooks
signature on the raw body, replay check, ``webhook.received`` acknowledged by Kafka). Baseline: a
bare aiohttp handler in its own process (parses the JSON / reads the body, answers 202, no Kafka).

The three servers start together and idle while another is measured; one load generator in its
own process runs, for each server and endpoint in turn (after a warm-up at 100 req/s):

- a closed loop of :data:`CONCURRENCY` clients (capacity, req/s); target: gateway >= 0.5 of bare;
- an open loop at :data:`RATE` req/s (sent on schedule whatever the answers: no coordinated
  omission); target: p99 < 20 ms.

The gateway runs as ``backbone gateway`` with ``BACKBONE_GATEWAY_WORKERS`` = 1 and 2
(SO_REUSEPORT). Everything shares the machine (broker, load generator, servers), so figures are
pessimistic on a small box; the ratios are measured in one run. Short by default;
``BACKBONE_BENCH_SECONDS`` lengthens each phase. :func:`measure` returns the figures as a dict.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import aiohttp

from benchmarks._harness import Row, Stat, progress, quick
from benchmarks._jobs import JobProcess
from benchmarks._servers import TOKEN, gateway_env, serve_process
from connectors.webhooks import WebhookSecret, signed_headers
from infra.kafka.broker import LocalBroker, free_port
from infra.registry import RegistryServer
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

RATE = 500  # offered requests per second in the open loop (the target rate)
CONCURRENCY = 32  # clients of the closed loop
SECONDS = float(os.environ.get("BACKBONE_BENCH_SECONDS", "1" if quick() else "4"))
WARMUP_S = 0.5 if quick() else 1.0  # 100 requests/s, unmeasured, before each endpoint's loops
EVENTS_PATH = "/v1/events/call.requested"
WEBHOOK_PATH = "/webhooks/bench"
WEBHOOK_BODY = (
    b'{"type": "invoice.paid", "data": {"id": "in_1", "amount": 4200, "currency": "eur"}}'
)
ENDPOINTS = ("events", "webhooks")


def _event_body(i: int) -> bytes:
    return json.dumps(
        {
            "call_id": f"ingest-{uuid.uuid4().hex[:8]}-{i}",
            "service": f"service-{i % 12}",
            "operation": "chat.completions",
            "payload": '{"model": "gpt-x"}',
            "idempotency_key": f"idem-{i}",
        }
    ).encode()


class _Requests:
    """Bodies and headers of one endpoint (webhooks signed afresh: ids must not repeat)."""

    def __init__(self, endpoint: str, secret: str) -> None:
        self.endpoint = endpoint
        self._key = WebhookSecret.parse(secret)

    def next(self, i: int) -> tuple[bytes, dict[str, str]]:
        if self.endpoint == "events":
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            return _event_body(i), headers
        signed = signed_headers([self._key], f"msg_{uuid.uuid4().hex}", WEBHOOK_BODY)
        return WEBHOOK_BODY, {**signed, "Content-Type": "application/json"}


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[bool, float]:
    began = time.perf_counter()
    try:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            ok = response.status == 202
    except aiohttp.ClientError:
        ok = False
    return ok, (time.perf_counter() - began) * 1000


async def _closed(url: str, requests: _Requests, seconds: float) -> dict[str, float]:
    done = errors = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def client(c: int) -> None:
            nonlocal done, errors
            i = 0
            while time.perf_counter() < deadline:
                ok, _ = await _post(http, url, *requests.next(c * 10_000_000 + i))
                done += ok
                errors += not ok
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    return {"rps": done / elapsed, "errors": errors}


async def _open(url: str, requests: _Requests, rate: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> None:
            nonlocal errors
            ok, ms = await _post(http, url, *requests.next(i))
            latencies.append(ms)
            errors += not ok

        tasks = []
        begin = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    ordered = sorted(latencies)
    return {
        "offered": len(tasks) / elapsed,
        "p50": _pct(ordered, 0.50),
        "p99": _pct(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
        "errors": errors,
    }


async def _load(base: str, endpoint: str, secret: str) -> dict[str, dict[str, float]]:
    requests = _Requests(endpoint, secret)
    url = base + (EVENTS_PATH if endpoint == "events" else WEBHOOK_PATH)
    await _open(url, requests, 100, WARMUP_S)  # warm connections, caches, schema ids
    cpu = _cpu_s(_tree(_server_pid(base)))
    closed = await _closed(url, requests, SECONDS)
    cpu = _cpu_s(_tree(_server_pid(base))) - cpu
    served = closed["rps"] * SECONDS + closed["errors"]
    closed["cpu_us"] = cpu / served * 1e6 if served else float("nan")
    return {"closed": closed, "open": await _open(url, requests, RATE, SECONDS)}


def _server_pid(_base: str) -> int:
    return int(os.environ["BENCH_INGEST_SERVER_PID"])


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (the gateway's workers)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _load_endpoints(base: str, secret: str) -> dict[str, dict[str, dict[str, float]]]:
    return {endpoint: await _load(base, endpoint, secret) for endpoint in ENDPOINTS}


def _load_job(base: str, secret: str, pid: int) -> dict[str, dict[str, dict[str, float]]]:
    """In the load generator's process: every endpoint of the server at ``base`` in turn.
    ``pid``: the server's process, whose CPU time (with its workers') is counted per request."""
    os.environ["BENCH_INGEST_SERVER_PID"] = str(pid)
    return asyncio.run(_load_endpoints(base, secret))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()  # SIGTERM: the gateway (and its workers) drain and stop
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _server(
    name: str, kafka: KafkaSettings, registry: RegistrySettings, prefix: str, secret: str
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    if name == "bare":
        return await serve_process(["benchmarks._null_http", str(port)], port, dict(os.environ))
    env = gateway_env(
        kafka.bootstrap,
        port,
        prefix,
        BACKBONE_SCHEMA_REGISTRY_URL=registry.url,
        BACKBONE_GATEWAY_WORKERS=name.removeprefix("gateway-x"),
        BACKBONE_WEBHOOK_SOURCES=json.dumps({"bench": {"secrets": [secret]}}),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra.cli", "gateway", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
    except BaseException:
        await _stop(proc)
        raise
    return proc, url


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, timeout_s: float = 180) -> None:
    """``/readyz`` answers 200 (a loaded 2-core box takes tens of seconds to start a gateway)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the gateway exited with code {proc.returncode}")
            try:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready within {timeout_s:g} s")


SERVERS = ("bare", "gateway-x1", "gateway-x2")


async def _run(kafka: KafkaSettings) -> dict[str, Any]:
    """Every server is started at once (their start-ups overlap) and idles while the others are
    measured; one load generator, in its own process so it does not share a server's event loop,
    measures each server in turn."""
    server = RegistryServer(kafka, topic="bench-ingest._schemas", port=0)
    await server.start()
    servers: list[tuple[asyncio.subprocess.Process, str]] = []
    try:
        catalogue = Catalogue(prefix=f"bench-ingest-{uuid.uuid4().hex[:6]}.")
        await apply_catalogue(kafka, catalogue, serving=True)
        registry = RegistrySettings(url=server.url)
        secret = WebhookSecret.generate().reveal()
        results: dict[str, Any] = {}
        async with JobProcess(_load_job) as load:
            progress(f"ingest: starting {', '.join(SERVERS)} and the load generator")
            started = await asyncio.gather(
                *(_server(name, kafka, registry, catalogue.prefix, secret) for name in SERVERS),
                return_exceptions=True,
            )
            servers = [s for s in started if not isinstance(s, BaseException)]
            for failed in started:
                if isinstance(failed, BaseException):
                    raise failed
            for name, (proc, url) in zip(SERVERS, servers, strict=True):
                progress(f"ingest: {name}, {', '.join(ENDPOINTS)}: warm-up {WARMUP_S:g} s, "
                         f"closed loop {SECONDS:g} s, open loop {RATE}/s for {SECONDS:g} s each")  # fmt: skip
                results[name] = await load.run(url, secret, proc.pid)
        return results
    finally:
        await asyncio.gather(*(_stop(proc) for proc, _ in servers))
        await server.stop()


def _figures(results: dict[str, Any]) -> dict[str, Any]:
    """Flat figures: per server and endpoint, closed-loop req/s, its ratio to bare, open-loop p50/p99."""
    out: dict[str, Any] = {
        "rate": RATE,
        "concurrency": CONCURRENCY,
        "seconds": SECONDS,
        "load": os.getloadavg()[0],
    }
    for name, by_endpoint in results.items():
        for endpoint, r in by_endpoint.items():
            prefix = f"{endpoint}.{name}"
            out[f"{prefix}.closed_rps"] = r["closed"]["rps"]
            out[f"{prefix}.closed_errors"] = r["closed"]["errors"]
            out[f"{prefix}.cpu_us_per_request"] = r["closed"]["cpu_us"]
            out[f"{prefix}.open_p50_ms"] = r["open"]["p50"]
            out[f"{prefix}.open_p99_ms"] = r["open"]["p99"]
            out[f"{prefix}.open_errors"] = r["open"]["errors"]
            bare = results["bare"][endpoint]["closed"]["rps"]
            out[f"{prefix}.ratio_to_bare"] = r["closed"]["rps"] / bare if bare else float("nan")
    return out


def measure() -> dict[str, Any]:
    """Run every server and endpoint on the shared broker (``BACKBONE_KAFKA_BOOTSTRAP``, as
    ``make bench`` sets it) or on one started here; return the figures."""
    if bootstrap := os.environ.get("BACKBONE_KAFKA_BOOTSTRAP"):
        kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-ingest")
        return _figures(asyncio.run(_run(kafka)))
    broker = LocalBroker()
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, client_id="bench-ingest")
        return _figures(asyncio.run(_run(kafka)))
    finally:
        broker.stop()


def rows() -> list[Row]:
    """The figures as rows of ``make bench``'s table (each against bare aiohttp)."""
    f = measure()
    _report(f)
    out: list[Row] = []
    for endpoint in ENDPOINTS:
        for name in SERVERS[1:]:
            p = f"{endpoint}.{name}"
            params = {"concurrency": CONCURRENCY, "rate_per_s": RATE, "seconds": SECONDS,
                      "processes": name.removeprefix("gateway-x")}  # fmt: skip
            out += [
                Row(f"ingest {endpoint} x{params['processes']}: closed loop", "req/s",
                    Stat.of(f[p + ".closed_rps"]), Stat.of(f[f"{endpoint}.bare.closed_rps"]),
                    "bare aiohttp 202", params, target="ratio >= 0.5"),
                Row(f"ingest {endpoint} x{params['processes']}: p99 at {RATE}/s", "ms",
                    Stat.of(f[p + ".open_p99_ms"]), Stat.of(f[f"{endpoint}.bare.open_p99_ms"]),
                    "bare aiohttp 202", params, target="p99 < 20 ms"),
                Row(f"ingest {endpoint} x{params['processes']}: server CPU per request", "us",
                    Stat.of(f[p + ".cpu_us_per_request"]),
                    Stat.of(f[f"{endpoint}.bare.cpu_us_per_request"]), "bare aiohttp 202", params),
            ]  # fmt: skip
    return out


def _report(f: dict[str, Any]) -> None:
    print(
        f"ingest edge: closed loop x{f['concurrency']}, open loop at {f['rate']} req/s, "
        f"{f['seconds']:g} s each (load average {f['load']:.1f} at the end)"
    )
    for endpoint in ENDPOINTS:
        print(f"  {endpoint}:")
        for name in SERVERS:
            p = f"{endpoint}.{name}"
            print(
                f"    {name:<11} closed {f[p + '.closed_rps']:7.0f} req/s "
                f"(ratio {f[p + '.ratio_to_bare']:.2f}, errors {f[p + '.closed_errors']:.0f}, "
                f"server CPU {f[p + '.cpu_us_per_request']:4.0f} us/req)  "
                f"open p50 {f[p + '.open_p50_ms']:6.1f} ms  p99 {f[p + '.open_p99_ms']:6.1f} ms  "
                f"(errors {f[p + '.open_errors']:.0f})"
            )
        for name in SERVERS[1:]:
            p = f"{endpoint}.{name}"
            ratio, p99 = f[p + ".ratio_to_bare"], f[p + ".open_p99_ms"]
            print(
                f"    {name}: capacity ratio {ratio:.2f} (target >= 0.50: "
                f"{'met' if ratio >= 0.5 else 'NOT met'}), p99 {p99:.1f} ms "
                f"(target < 20 ms: {'met' if p99 < 20 else 'NOT met'})"
            )


def main() -> None:
    _report(measure())


if __name__ == "__main__":
    main()
