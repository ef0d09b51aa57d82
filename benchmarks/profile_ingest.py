"""Where a gateway request's server CPU goes: cProfile on a CPU-time clock, grouped by part.

    .venv/bin/python -m benchmarks.profile_ingest events     # POST /v1/events/call.requested
    .venv/bin/python -m benchmarks.profile_ingest webhooks   # verified POST /webhooks/bench

One gateway process (as ``backbone gateway`` runs it, every extension included) on the shared
broker (``BACKBONE_KAFKA_BOOTSTRAP``) or one started here, under the closed loop of
:mod:`benchmarks.bench_ingest` (32 clients, load generator in its own process). Two windows of
``BACKBONE_BENCH_SECONDS`` (default 5): unprofiled, for the real CPU per request, then profiled
(:mod:`benchmarks._profiled_gateway`). The profile's own time per function is summed by part
(HTTP, validation, Avro, producer...); a C function's time goes to the part of its caller,
unless the function itself names the part (pydantic's validator, fastavro's writer). cProfile
slows Python code more than C code, so read the shares as a ranking, and the unprofiled figure as
the cost. ``--out FILE`` keeps the raw profile (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import pstats
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks._servers import gateway_env
from benchmarks.bench_ingest import (
    EVENTS_PATH,
    WEBHOOK_PATH,
    _closed,
    _cpu_s,
    _open,
    _Requests,
    _stop,
    _wait_ready,
)
from connectors.webhooks import WebhookSecret
from infra.kafka.broker import LocalBroker, free_port
from infra.registry import RegistryServer
from streams.admin import apply_catalogue
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

SECONDS = float(os.environ.get("BACKBONE_BENCH_SECONDS", "5"))

#: (part, fragments of a function's file or name); the first match wins
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tracing (OpenTelemetry, middleware)", ("opentelemetry", "gateway/_tracing", "streams/tracing")),
    ("auth + rate limit middleware", ("gateway/_clients", "resilience/")),
    ("error middleware", ("gateway/_problems",)),
    ("pydantic validation", ("pydantic", "validate_json", "model_validate", "streams/events")),
    ("JSON depth/size checks", ("gateway/_validate", "gateway/_body")),
    ("Avro encode", ("fastavro", "streams/codec", "streams/_plain", "schemaless")),
    ("registry lookup", ("registry_client",)),
    ("producer send path (ours)", ("streams/producer", "_aiokafka_compat")),
    ("aiokafka (batching, sender, protocol)", ("aiokafka",)),
    ("webhook signature", ("webhooks/_signing", "hmac", "base64")),  # sha256: by caller
    ("webhook dedupe (seen-set)", ("webhooks/_seen",)),
    ("webhook handler", ("webhooks/_ingress",)),
    ("ingest handler", ("gateway/_ingest",)),
    ("response (JSON encode, write)", ("web_response", "http_writer", "json/encoder", "dumps")),
    ("aiohttp HTTP parsing, routing", ("aiohttp", "multidict", "yarl", "propcache")),
    ("logging", ("logging",)),
    ("extensions' background work", ("realtime/", "metrics_api", "agents/", "streams/follow",
                                     "streams/consumer", "calls_api")),
    ("event loop (uvloop/asyncio), tasks", ("uvloop", "asyncio", "run_forever", "selectors",
                                           "socket")),
)  # fmt: skip


def part_of(where: str) -> str | None:
    for part, fragments in PARTS:
        if any(fragment in where for fragment in fragments):
            return part
    return None


def _where(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    return f"{filename}:{name}"


#: pstats' table: function -> (primitive calls, calls, own time, cumulative time, callers), where
#: callers maps each caller to the same figures for the calls it made
Table = dict[tuple[str, int, str], tuple[Any, ...]]


def breakdown(table: Table) -> dict[str, float]:
    """Own CPU seconds per part. A builtin (C) function that names no part is charged to its
    callers' parts, in proportion to the time it spent under each."""
    parts: dict[str, float] = defaultdict(float)
    for func, (_, _, own, _, callers) in table.items():
        builtin = func[0] == "~"
        part = part_of(func[2] if builtin else _where(func))
        if part is not None or not builtin or not callers:
            parts[part or "other"] += own
            continue
        for caller, edge in callers.items():
            parts[part_of(_where(caller)) or "other"] += edge[2]
    return dict(parts)


def _load(conn: Connection, url: str, endpoint: str, secret: str, seconds: float) -> None:
    """In its own process: say ready, wait for go, run the closed loop, send its figures."""
    requests = _Requests(endpoint, secret)
    conn.send("ready")
    warm = conn.recv()
    if warm == "warm":
        asyncio.run(_open(url, requests, 100, 1.0))
        conn.send("warmed")
        conn.recv()
    conn.send(asyncio.run(_closed(url, requests, seconds)))


def _window(url: str, endpoint: str, secret: str, pid: int, *, warm: bool) -> tuple[float, float]:
    """(requests served, server CPU seconds) of one closed-loop window."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_load, args=(child, url, endpoint, secret, SECONDS), daemon=True
    )
    proc.start()
    try:
        parent.recv()
        if warm:
            parent.send("warm")
            parent.recv()
        before = _cpu_s([pid])
        parent.send("go")
        result = parent.recv()
        used = _cpu_s([pid]) - before
    finally:
        proc.join(30)
    return result["rps"] * SECONDS + result["errors"], used


def _profiled_window(
    url: str, endpoint: str, secret: str, pid: int, out: Path
) -> tuple[float, float]:
    """:func:`_window` with the gateway's profiler on; returns once the profile is written."""
    os.kill(pid, signal.SIGUSR1)
    served, cpu = _window(url, endpoint, secret, pid, warm=False)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while not out.with_suffix(".done").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return served, cpu


async def _gateway(
    kafka: KafkaSettings, registry: RegistrySettings, prefix: str, secret: str, out: Path
) -> tuple[asyncio.subprocess.Process, str]:
    import json

    port = free_port()
    env = gateway_env(
        kafka.bootstrap,
        port,
        prefix,
        BACKBONE_SCHEMA_REGISTRY_URL=registry.url,
        BACKBONE_WEBHOOK_SOURCES=json.dumps({"bench": {"secrets": [secret]}}),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks._profiled_gateway", str(out), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    await _wait_ready(url, proc)
    return proc, url


async def _profile(kafka: KafkaSettings, endpoint: str, out: Path) -> str:
    server = RegistryServer(kafka, topic="profile-ingest._schemas", port=0)
    await server.start()
    try:
        catalogue = Catalogue(prefix=f"profile-ingest-{uuid.uuid4().hex[:6]}.")
        await apply_catalogue(kafka, catalogue, serving=True)
        secret = WebhookSecret.generate().reveal()
        registry = RegistrySettings(url=server.url)
        proc, url = await _gateway(kafka, registry, catalogue.prefix, secret, out)
        try:
            path = url + (EVENTS_PATH if endpoint == "events" else WEBHOOK_PATH)
            served, cpu = await asyncio.to_thread(
                _window, path, endpoint, secret, proc.pid, warm=True
            )
            p_served, p_cpu = await asyncio.to_thread(
                _profiled_window, path, endpoint, secret, proc.pid, out
            )
        finally:
            await _stop(proc)
        return _report(endpoint, out, served, cpu, p_served, p_cpu)
    finally:
        await server.stop()


def _report(
    endpoint: str, out: Path, served: float, cpu: float, p_served: float, p_cpu: float
) -> str:
    parts = breakdown(pstats.Stats(str(out)).stats)  # type: ignore[attr-defined]
    total = sum(parts.values())
    lines = [
        f"{endpoint}: closed loop x32, {SECONDS:g} s windows, load average "
        f"{os.getloadavg()[0]:.1f}",
        f"  unprofiled: {served / SECONDS:.0f} req/s, server CPU {cpu / served * 1e6:.0f} us/req",
        f"  profiled:   {p_served / SECONDS:.0f} req/s, server CPU {p_cpu / p_served * 1e6:.0f} "
        f"us/req (profile holds {total / p_served * 1e6:.0f} us/req)",
        "  share of the profiled CPU, per part (us/req are profiled, inflated):",
    ]
    for part, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {seconds / total:6.1%}  {seconds / p_served * 1e6:6.0f} us/req  {part}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", choices=("events", "webhooks"))
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profile here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-ingest-") as tmp:
        out = args.out or Path(tmp) / "gateway.prof"
        out.with_suffix(".done").unlink(missing_ok=True)
        if bootstrap := os.environ.get("BACKBONE_KAFKA_BOOTSTRAP"):
            kafka = KafkaSettings(bootstrap=bootstrap, client_id="profile-ingest")
            print(asyncio.run(_profile(kafka, args.endpoint, out)))
            return
        broker = LocalBroker()
        broker.start()
        try:
            kafka = KafkaSettings(bootstrap=broker.bootstrap, client_id="profile-ingest")
            print(asyncio.run(_profile(kafka, args.endpoint, out)))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
