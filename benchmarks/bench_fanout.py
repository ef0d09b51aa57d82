"""Websocket fan-out (issue 13): N clients on one channel, events produced at a fixed rate.

``backbone gateway`` runs in its own process; the clients run in ``CLIENT_PROCESSES`` other
processes (aiohttp websocket clients), each authenticated with its own token and subscribed to
``collab:bench``. This process publishes ``collab.message_posted`` events at ``RATE`` per second
for ``SECONDS`` with the SDK, each stamped with ``occurred_at`` just before it is sent.

Reported, in one run:
- delivered frames/s over all clients, against the offered rate (clients x events/s): 1.00 means
  every client kept up;
- p50/p99 lag from produce to client receipt (``occurred_at`` to the client's clock; same
  machine, same clock), against a raw ``AIOKafkaConsumer`` reading the same topic in this
  process (lag from ``occurred_at`` of the decoded record to its arrival): the Kafka hop alone;
- completeness: the fraction of clients that received every event exactly once;
- the same clients against a bare aiohttp websocket broadcast of the same frames (no Kafka, one
  frame built per event and sent to all), run first: issue 13's baseline;
- the gateway's RSS and CPU seconds during the run;
- then a second gateway, with a small send queue and socket buffer (``BENCH_WS_QUEUE_FRAMES``,
  ``BENCH_WS_SOCKET_BUFFER``), and fresh clients, ``STALLED`` of which stop reading: how many it
  cut as slow consumers (4008), whether the readers still got everything, and its RSS.
The first phase's gateway runs with the default bounds, as deployed: it measures throughput, and
a reader that keeps up is never cut there. ``BENCH_WS_LIVE_QUEUE_FRAMES`` and
``BENCH_WS_LIVE_SOCKET_BUFFER`` give it other bounds (the second phase's, to see that readers
that keep up with the bare broadcast are not cut by a small queue either).
The lag includes the client processes' own queueing: on a loaded 2-core box they compete with
the gateway and the broker for the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks._harness import (
    FLOOR_E2E_P50,
    FLOOR_E2E_P99,
    Row,
    Stat,
    kafka_bootstrap,
    percentile,
    progress,
    scaled,
)
from benchmarks._servers import serve_process
from connectors.realtime.tokens import mint
from infra.kafka.broker import free_port
from infra.registry import RegistryServer
from streams.admin import apply_catalogue, partitions
from streams.codec import Codec
from streams.events.collab import CollabMessagePosted
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

CLIENTS = int(os.environ.get("BENCH_WS_CLIENTS", str(scaled(1000, 100))))
CLIENT_PROCESSES = scaled(4, 2)
RATE = int(os.environ.get("BENCH_WS_RATE", "20"))  # events/s, each to every client
SECONDS = scaled(15, 4)
#: the fraction of clients that subscribe and then stop reading: the gateway must cut them (close
#: 4008, slow consumer) and stay bounded in memory while the others are unaffected
STALLED = float(os.environ.get("BENCH_WS_STALLED", "0.1"))
#: the second phase's gateway: its per-connection send queue (frames) and kernel send buffer
#: (bytes), small, so that a client that stopped reading overflows them within the phase
QUEUE_FRAMES = int(os.environ.get("BENCH_WS_QUEUE_FRAMES", "50"))
SOCKET_BUFFER = int(os.environ.get("BENCH_WS_SOCKET_BUFFER", "16384"))
#: the first phase's gateway runs with the defaults, as deployed; these set its bounds instead
#: (e.g. the second phase's, to see what a small queue does to readers that keep up)
LIVE_QUEUE_FRAMES = os.environ.get("BENCH_WS_LIVE_QUEUE_FRAMES")
LIVE_SOCKET_BUFFER = os.environ.get("BENCH_WS_LIVE_SOCKET_BUFFER")
#: the second phase: fresh clients, STALLED of them never reading, events at RATE for this long
STALL_SECONDS = scaled(30, 8)
DRAIN_S = 120  # after the last event, how long a client may take to receive everything
BODY = "x" * 200
CHANNEL = "collab:bench"
KEY = "bench-fanout-key-" + "k" * 32


# --- client processes -----------------------------------------------------------------------


def _lag_ms(frame: dict[str, Any], now: float) -> float:
    occurred = datetime.fromisoformat(frame["payload"]["occurred_at"]).timestamp()
    return (now - occurred) * 1000


async def _client(
    url: str, token: str, ready: asyncio.Event, stop: asyncio.Event, expected: list[int],
    stats: dict[str, Any], stalled: bool,
) -> None:  # fmt: skip
    """One client; ``stats`` is filled as frames arrive, so a cut-off client still reports. A
    ``stalled`` client subscribes, reads nothing until the run ends, then reads what is left to
    find out whether the gateway cut it."""
    seen: set[str] = set()
    stats.update(received=0, duplicates=0, lags=[], stalled=stalled)
    # a stalled client's small receive buffer stands for a slow link: the kernel holds a few
    # frames, not megabytes, before the gateway's own queue has to take them
    connector = aiohttp.TCPConnector(socket_factory=_small_buffer if stalled else None)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        await ws.send_str(json.dumps({"op": "auth", "token": token}))
        await ws.send_str(json.dumps({"op": "subscribe", "channel": CHANNEL, "id": 1}))
        while True:
            frame = json.loads((await ws.receive(timeout=120)).data)
            if frame.get("type") == "subscribed":
                break
            if frame.get("type") in ("error", "resync_required"):
                raise RuntimeError(f"subscribe refused: {frame}")
        ready.set()
        if stalled:
            # stop reading the socket itself, as a frozen client would (aiohttp's client would
            # otherwise keep reading into its own buffer)
            connection = ws._response.connection
            transport = connection.transport if connection is not None else None
            assert transport is not None, "a websocket client without its connection"
            transport.pause_reading()
            await stop.wait()
            transport.resume_reading()
            stats["cut"] = await _cut_with(ws)
            return
        while not (stop.is_set() and expected and len(seen) >= expected[0]):
            try:
                message = await ws.receive(timeout=1)
            except TimeoutError:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                stats["closed"] = f"{message.type.name} {ws.close_code}"
                break
            now = time.time()
            frame = json.loads(message.data)
            if frame.get("type") != "publication":
                continue
            if frame["event_id"] in seen:
                stats["duplicates"] += 1
                continue
            seen.add(frame["event_id"])
            stats["received"] = len(seen)
            stats["lags"].append(_lag_ms(frame, now))


def _small_buffer(addr: Any) -> socket.socket:
    family, kind, proto, _, _ = addr
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def _cut_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code the gateway sent a client that stopped reading; None if it never cut it."""
    try:
        while True:
            message = await ws.receive(timeout=5)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code
            if message.type is not aiohttp.WSMsgType.TEXT:
                return ws.close_code
    except TimeoutError:  # still open, nothing more queued: never cut
        return None


async def _clients(conn: Connection, url: str, tokens: list[tuple[str, bool]]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    stop = asyncio.Event()
    expected: list[int] = []
    readies = [asyncio.Event() for _ in tokens]
    stats: list[dict[str, Any]] = [{} for _ in tokens]
    tasks = [
        asyncio.create_task(_client(url, token, ready, stop, expected, one, stalled))
        for (token, stalled), ready, one in zip(tokens, readies, stats, strict=True)
    ]
    waiting = asyncio.gather(*(r.wait() for r in readies))
    watched: list[asyncio.Future[Any]] = [waiting, *tasks]
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in tasks if t in done]
    if failed:  # a client died before it subscribed
        conn.send({"error": repr(failed[0].exception())})
        return
    conn.send("ready")
    message = await asyncio.to_thread(conn.recv)  # {"expected": n, "deadline_s": s}
    expected.append(message["expected"])
    stop.set()
    _, late = await asyncio.wait(tasks, timeout=message["deadline_s"])
    for task in late:
        task.cancel()
    for task, one in zip(tasks, stats, strict=True):
        if task in late:
            one["error"] = "did not receive every event before the deadline"
        elif task.exception() is not None:
            one["error"] = repr(task.exception())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send({"clients": stats, "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before})


def _client_process(conn: Connection) -> None:
    """One client process for every phase: each ``(url, tokens)`` it is sent is a phase's share
    of the clients (:func:`_clients`); ``None`` ends it."""
    while (phase := conn.recv()) is not None:
        try:
            asyncio.run(_clients(conn, *phase))
        except Exception as exc:  # reported to the parent, never silent
            conn.send({"error": f"{type(exc).__name__}: {exc}"})


class _ClientProcesses:
    """:data:`CLIENT_PROCESSES` client processes, spawned once for all the phases (each spawn
    costs its imports: seconds on a loaded box)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.procs: list[tuple[Any, Connection]] = []
        for _ in range(CLIENT_PROCESSES):
            parent, child = mp.Pipe()
            proc = ctx.Process(target=_client_process, args=(child,), daemon=True)
            proc.start()
            self.procs.append((proc, parent))

    def stop(self) -> None:
        for proc, conn in self.procs:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    conn.send(None)
        for proc, _ in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)


async def _deliver(
    clients: _ClientProcesses, url: str, tokens: list[tuple[str, bool]],
    produce: Callable[[], Awaitable[Any]], total: int,
) -> tuple[list[dict[str, Any]], float, float]:  # fmt: skip
    """The clients (shared out over the client processes) subscribe, ``produce`` runs, every
    client drains or times out; returns each client's stats, the seconds from the start of
    ``produce`` to the end and the CPU seconds the client processes used in the phase."""
    for n, (_, conn) in enumerate(clients.procs):
        conn.send((url, tokens[n::CLIENT_PROCESSES]))
    progress(f"fanout: {len(tokens)} clients in {CLIENT_PROCESSES} processes connecting to {url}")
    for _, conn in clients.procs:
        answer = await asyncio.to_thread(conn.recv)
        if answer != "ready":
            raise RuntimeError(f"websocket clients failed: {answer}")
    progress(f"fanout: {RATE} events/s for {total / RATE:g} s to {len(tokens)} clients")
    began = time.perf_counter()
    await produce()
    for _, conn in clients.procs:
        conn.send({"expected": total, "deadline_s": DRAIN_S})
    results = [await asyncio.to_thread(conn.recv) for _, conn in clients.procs]
    elapsed = time.perf_counter() - began
    found: list[dict[str, Any]] = []
    for result in results:
        if "error" in result:
            raise RuntimeError(f"websocket clients failed: {result['error']}")
        found.extend(result["clients"])
    return found, elapsed, sum(result["cpu_s"] for result in results)


def _summary(clients: list[dict[str, Any]], total: int, elapsed: float) -> dict[str, Any]:
    """Completeness, errors and lags over the clients that kept reading; the stalled ones are
    counted apart (``cut``: their close codes, None for one never cut)."""
    reading = [c for c in clients if not c.get("stalled")]
    ok = [c for c in reading if "error" not in c and "closed" not in c]
    return {
        "delivered": sum(c.get("received", 0) for c in reading),
        "rate": sum(c.get("received", 0) for c in reading) / elapsed,
        "complete": sum(1 for c in ok if c["received"] == total) / len(reading),
        "duplicates": sum(c.get("duplicates", 0) for c in reading),
        "errors": [c.get("error") or c.get("closed") for c in reading if c not in ok],
        "failed_received": [c.get("received", 0) for c in reading if c not in ok],
        "lags": [lag for c in reading for lag in c.get("lags", [])],
        "cut": [c.get("cut", c.get("error")) for c in clients if c.get("stalled")],
    }


async def _bare(clients: _ClientProcesses, base: str, tokens: list[str], total: int
                ) -> dict[str, Any]:  # fmt: skip
    """The baseline: the same clients and frames from the bare aiohttp broadcast at ``base``, no
    Kafka; every client reads (a bare broadcast has no slow-consumer cut)."""
    async with aiohttp.ClientSession() as http:

        async def produce() -> None:
            spec = {"rate": RATE, "total": total, "body": BODY}
            async with http.post(f"{base}/broadcast", json=spec) as response:
                response.raise_for_status()

        url = base.replace("http://", "ws://") + "/ws"
        found, elapsed, cpu = await _deliver(
            clients, url, [(t, False) for t in tokens], produce, total
        )
    return {**_summary(found, total, elapsed), "clients_cpu_s": cpu}


# --- the gateway and the producer -------------------------------------------------------------


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kib / 1024, (int(fields[11]) + int(fields[12])) / ticks


async def _raw_lags(kafka: KafkaSettings, codec: Codec, topic: str, n: int, ready: asyncio.Event,
                    ) -> list[float]:  # fmt: skip
    """The Kafka hop alone: a raw consumer of the same topic, from its end, until n records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    lags: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in (await partitions(kafka, [topic]))[topic]]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        deadline = time.monotonic() + SECONDS + 120
        while len(lags) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for record in records:
                    assert record.value is not None
                    event = await codec.decode(record.value)
                    lags.append((now - event.occurred_at.timestamp()) * 1000)
    finally:
        await consumer.stop()
    return lags


async def _produce(publisher: Publisher, total: int) -> float:
    """``total`` events at RATE per second (open loop); returns the seconds it took."""
    began = time.perf_counter()
    sends = []
    for n in range(total):
        delay = began + n / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = CollabMessagePosted(room="bench", author="bench", body=BODY)
        sends.append(asyncio.create_task(publisher.publish(event)))
    await asyncio.gather(*sends)
    return time.perf_counter() - began


async def _sample_rss(pid: int, into: list[float]) -> None:
    """The gateway's RSS (MiB) every half second, until cancelled."""
    while True:
        into.append(_proc_stats(pid)[0])
        await asyncio.sleep(0.5)


def _raise_fd_limit() -> None:
    """1,000 clients need more than the common soft limit of 1,024 descriptors; the gateway and the
    client processes inherit the raised limit (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CLIENTS * 2 + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def _bounds(queue_frames: str | None, socket_buffer: str | None) -> str:
    """The ``[realtime]`` section of a gateway's config file ("" keeps the defaults)."""
    keys = {"send_queue_frames": queue_frames, "socket_send_buffer_bytes": socket_buffer}
    lines = [f"{key} = {int(value)}" for key, value in keys.items() if value is not None]
    return "[realtime]\n" + "\n".join(lines) + "\n" if lines else ""


class _Server(NamedTuple):
    """A server of the run in its own process, and where its clients connect."""

    proc: asyncio.subprocess.Process
    url: str  # ws://...

    @property
    def pid(self) -> int:
        return self.proc.pid


async def _gateway(env: dict[str, str], config: Path) -> _Server:
    """``backbone gateway`` in its own process with the config file ``config`` (its bounds);
    returns once it answers ``/healthz``."""
    bounds = config.read_text()  # noqa: ASYNC240 - a few bytes, before the run
    port = free_port()
    gateway, _ = await serve_process(
        ["infra.cli", "gateway", "--port", str(port)], port,
        {**env, "BACKBONE_CONFIG": str(config)}, attempts=1200,
    )  # fmt: skip
    progress(f"fanout: gateway pid {gateway.pid} ({bounds.strip() or 'default bounds'})")
    return _Server(gateway, f"ws://127.0.0.1:{port}/ws")


async def _stop(server: _Server) -> None:
    proc = server.proc
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _servers(env: dict[str, str], folder: Path) -> list[_Server]:
    """The bare broadcast and both gateways (default bounds, then small ones), started together
    so their start-ups overlap; each idles until its phase. All or none: a failure stops the
    ones that started."""
    port = free_port()
    live, small = folder / "live.toml", folder / "small.toml"
    live.write_text(_bounds(LIVE_QUEUE_FRAMES, LIVE_SOCKET_BUFFER))
    small.write_text(_bounds(str(QUEUE_FRAMES), str(SOCKET_BUFFER)))

    async def bare() -> _Server:
        proc, base = await serve_process(["benchmarks._ws_broadcast", str(port)], port,
                                         dict(os.environ), attempts=1200)  # fmt: skip
        return _Server(proc, base)  # its HTTP base: /broadcast and /ws

    started = await asyncio.gather(
        bare(),
        _gateway(env, live),
        _gateway(env, small),
        return_exceptions=True,
    )
    servers = [server for server in started if isinstance(server, _Server)]
    for failed in started:
        if isinstance(failed, BaseException):
            await asyncio.gather(*(_stop(server) for server in servers))
            raise failed
    return servers


async def _run(bootstrap: str) -> dict[str, Any]:
    _raise_fd_limit()
    kafka = KafkaSettings(bootstrap=bootstrap, client_id="bench-fanout")
    catalogue = Catalogue(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    server = RegistryServer(kafka, topic=f"{catalogue.prefix}_schemas", port=0)
    await server.start()
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": server.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_WS_JWT_KEY": KEY,
    }
    total = RATE * SECONDS
    tokens = [mint(KEY, [CHANNEL], ttl_s=3600) for _ in range(CLIENTS)]
    stalled = round(CLIENTS * STALLED)
    load = [os.getloadavg()[0]]
    clients = _ClientProcesses()  # their imports overlap with the servers' start-ups
    folder = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    servers: list[_Server] = []
    try:
        await apply_catalogue(kafka, catalogue, serving=True)
        progress("fanout: starting the bare broadcast and two gateways")
        servers = await _servers(env, folder)
        bare_server, live, small = servers
        progress("fanout: baseline, bare aiohttp broadcast")
        bare = await _bare(clients, bare_server.url, tokens, total)
        await _stop(bare_server)
        topic = catalogue.name("collab.messages")
        async with (
            RegistryClient(RegistrySettings(url=server.url)) as registry,
            Publisher(kafka, Codec(registry), catalogue) as publisher,
        ):
            codec = Codec(registry)
            pid = live.pid
            rss_before, cpu_before = _proc_stats(pid)
            raw_ready = asyncio.Event()
            raw = asyncio.create_task(_raw_lags(kafka, codec, topic, total, raw_ready))
            await raw_ready.wait()
            found, elapsed, clients_cpu = await _deliver(
                clients, live.url, [(t, False) for t in tokens],
                lambda: _produce(publisher, total), total,
            )  # fmt: skip
            raw_lags = await raw
            rss_after, cpu_after = _proc_stats(pid)
            await _stop(live)
            load.append(os.getloadavg()[0])
            # phase 2: a gateway with small bounds, fresh clients, some never reading
            burst = RATE * STALL_SECONDS
            pid = small.pid
            progress(f"fanout: {stalled} of {CLIENTS} clients stop reading; {burst} events")
            rss: list[float] = [_proc_stats(pid)[0]]
            sampler = asyncio.create_task(_sample_rss(pid, rss))
            roles = [(mint(KEY, [CHANNEL], ttl_s=3600), n < stalled) for n in range(CLIENTS)]
            stalling, stall_elapsed, _ = await _deliver(
                clients, small.url, roles, lambda: _produce(publisher, burst), burst
            )
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            rss_end = _proc_stats(pid)[0]
            load.append(os.getloadavg()[0])
    finally:
        await asyncio.gather(*(_stop(server) for server in servers))
        await asyncio.to_thread(clients.stop)
        shutil.rmtree(folder, ignore_errors=True)
        await server.stop()
    return {
        **_summary(found, total, elapsed),
        "total": total,
        "elapsed": elapsed,
        "bare": bare,
        "raw_lags": raw_lags,
        "gateway_rss_mib": (rss_before, rss_after),
        "stalling": {
            **_summary(stalling, burst, stall_elapsed),
            "events": burst,
            "stalled": stalled,
            "rss_start_mib": rss[0],
            "rss_peak_mib": max(rss),
            "rss_end_mib": rss_end,
        },
        "gateway_cpu_s": cpu_after - cpu_before,
        "clients_cpu_s": clients_cpu,
        "load": load,
    }


def _report(found: dict[str, Any]) -> None:
    rate, bare = found["rate"], found["bare"]
    live_bounds = _bounds(LIVE_QUEUE_FRAMES, LIVE_SOCKET_BUFFER).replace("\n", " ").strip()
    print(f"{CLIENTS} clients on {CHANNEL}, {RATE} events/s for {SECONDS} s ({found['total']} "
          f"events), gateway with {live_bounds or 'default bounds'}; load average "
          f"{' -> '.join(f'{x:.1f}' for x in found['load'])} ({os.cpu_count()} cores):")  # fmt: skip
    print(f"  delivered {found['delivered']:,} frames, {rate:,.0f} frames/s "
          f"(offered {CLIENTS * RATE:,}/s; {rate / max(bare['rate'], 1e-9):.2f} x the bare "
          f"broadcast); complete clients {found['complete']:.3f}, "
          f"duplicates {found['duplicates']}, client errors {len(found['errors'])}")  # fmt: skip
    if found["lags"]:
        print(f"  lag produce -> client: p50 {percentile(found['lags'], 0.5):.1f} ms, "
              f"p99 {percentile(found['lags'], 0.99):.1f} ms")  # fmt: skip
    if found["raw_lags"]:
        print(f"  raw aiokafka consumer: p50 {percentile(found['raw_lags'], 0.5):.1f} ms, "
              f"p99 {percentile(found['raw_lags'], 0.99):.1f} ms")  # fmt: skip
    print(f"  baseline, bare aiohttp broadcast (no Kafka): {bare['rate']:,.0f} frames/s, complete "
          f"{bare['complete']:.3f}, lag p50 {percentile(bare['lags'] or [0.0], 0.5):.1f} ms, "
          f"p99 {percentile(bare['lags'] or [0.0], 0.99):.1f} ms")  # fmt: skip
    if found["errors"]:
        print(f"  client problems (first 3): {found['errors'][:3]}; events they had received: "
              f"{_spread(found['failed_received'])}")  # fmt: skip
    before, after = found["gateway_rss_mib"]
    print(f"  gateway RSS {before:.0f} -> {after:.0f} MiB, CPU {found['gateway_cpu_s']:.1f} s "
          f"({found['gateway_cpu_s'] * 1e6 / max(found['delivered'], 1):.1f} us per frame); "
          f"client processes CPU {found['clients_cpu_s']:.1f} s (bare run: "
          f"{bare['clients_cpu_s']:.1f} s)")  # fmt: skip
    stall = found["stalling"]
    codes = dict(sorted(Counter(str(c) for c in stall["cut"]).items()))
    lags = stall["lags"] or [0.0]
    print(f"  then a gateway with send queue {QUEUE_FRAMES} frames, socket buffer {SOCKET_BUFFER} "
          f"bytes: {stall['stalled']} of {CLIENTS} fresh clients stop reading, {stall['events']} "
          f"events at {RATE}/s: {_cut(stall)} cut as slow consumers (close codes {codes}); "
          f"reading clients complete {stall['complete']:.3f}, errors {len(stall['errors'])}, "
          f"lag p50 {percentile(lags, 0.5):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms; "
          f"gateway RSS {stall['rss_start_mib']:.0f} MiB, peak {stall['rss_peak_mib']:.0f} MiB, "
          f"{stall['rss_end_mib']:.0f} MiB after")  # fmt: skip
    if stall["errors"]:
        print(f"  reading client problems (first 3): {stall['errors'][:3]}; events they had "
              f"received: {_spread(stall['failed_received'])}")  # fmt: skip


def _spread(values: list[int]) -> str:
    ordered = sorted(values) or [0]
    return f"min {ordered[0]}, median {ordered[len(ordered) // 2]}, max {ordered[-1]}"


def _cut(stall: dict[str, Any]) -> int:
    return sum(1 for c in stall["cut"] if c == 4008)


def _measure() -> dict[str, Any]:
    with kafka_bootstrap() as bootstrap:
        return asyncio.run(_run(bootstrap))


def rows() -> list[Row]:
    found = _measure()
    _report(found)
    bare = found["bare"]
    if not found["lags"] or not found["raw_lags"] or not bare["lags"]:
        raise RuntimeError(f"no deliveries measured: {found['errors'][:3]} {bare['errors'][:3]}")
    params = {"clients": CLIENTS, "client_processes": CLIENT_PROCESSES, "events_per_s": RATE,
              "seconds": SECONDS, "records": found["total"], "partitions": 6,
              "body_bytes": len(BODY), "repeats": 1, "warmup": 0,
              "complete_clients": round(found["complete"], 4), "duplicates": found["duplicates"],
              "gateway_rss_mib": [round(x) for x in found["gateway_rss_mib"]],
              "stalled_clients": found["stalling"]["stalled"], "send_queue_frames": QUEUE_FRAMES,
              "stalled_cut_4008": _cut(found["stalling"]), "socket_send_buffer": SOCKET_BUFFER,
              "stalling_complete_readers": round(found["stalling"]["complete"], 4),
              "stalling_rss_peak_mib": round(found["stalling"]["rss_peak_mib"]),
              "live_send_queue_frames": LIVE_QUEUE_FRAMES or "default",
              "live_socket_send_buffer": LIVE_SOCKET_BUFFER or "default",
              "load_average": [round(x, 1) for x in found["load"]],
              "gateway_cpu_s": round(found["gateway_cpu_s"], 1)}  # fmt: skip
    return [
        Row("ws fan-out: delivered", "frames/s", Stat.of(found["rate"]), Stat.of(bare["rate"]),
            "bare aiohttp broadcast", {**params, "offered_frames_per_s": CLIENTS * RATE}),
        Row("ws fan-out: complete clients", "fraction", Stat.of(found["complete"]),
            Stat.of(bare["complete"]), "bare aiohttp broadcast", params, target="1.0"),
        Row("ws fan-out: lag p99 vs bare broadcast", "ms",
            Stat.of(percentile(found["lags"], 0.99)), Stat.of(percentile(bare["lags"], 0.99)),
            "bare aiohttp broadcast", params, target="< 100 ms"),
        Row("ws fan-out: lag p50 produce -> client", "ms",
            Stat.of(percentile(found["lags"], 0.5)), Stat.of(percentile(found["raw_lags"], 0.5)),
            "raw aiokafka consumer", params, floor_key=FLOOR_E2E_P50),
        Row("ws fan-out: lag p99 produce -> client", "ms",
            Stat.of(percentile(found["lags"], 0.99)), Stat.of(percentile(found["raw_lags"], 0.99)),
            "raw aiokafka consumer", params, floor_key=FLOOR_E2E_P99, target="< 100 ms"),
    ]  # fmt: skip


def main() -> None:
    _report(_measure())


if __name__ == "__main__":
    main()
