"""``backbone kafka up|down|status|fetch``: a detached local broker (or cluster) for development."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from infra.cli._app import EXIT_UNAVAILABLE, emit, fail, json_option, main, settings
from infra.errors import InfraError
from infra.kafka.broker import (
    BrokerOptions,
    LocalBroker,
    ensure_distribution,
    kafka_version,
    metadata_ok,
)
from infra.kafka.cluster import ClusterOptions, LocalCluster, active_controller
from infra.kafka.state import forget_state, pids_of, read_state, write_state
from streams.cluster import ClusterState, cluster_state
from streams.errors import BackboneError


@main.group()
def kafka() -> None:
    """The local Kafka broker (fetched from Maven Central, run with java)."""


def _read_state() -> dict[str, object] | None:
    return read_state(settings().local.state_dir)


@kafka.command()
def fetch() -> None:
    """Fetch the pinned Kafka release into the cache (done automatically on first start)."""
    try:
        libs = ensure_distribution()
    except InfraError as exc:
        fail(str(exc))
    click.echo(f"Kafka {kafka_version()} jars in {libs}")


@kafka.command()
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Nodes: with 3, a KRaft quorum of 3 broker+controller nodes on consecutive ports from "
    "BACKBONE_KAFKA_PORT, replication 3, min.insync.replicas 2.",
)
@json_option
def up(brokers: int, as_json: bool) -> None:
    """Start a detached broker on 127.0.0.1 (BACKBONE_KAFKA_PORT, default 9092)."""
    cfg = settings()
    running = _read_state()
    if running is not None:
        emit(running, as_json, lambda: click.echo(f"already running at {running['bootstrap']}"))
        return
    cfg.local.state_dir.mkdir(parents=True, exist_ok=True)
    state = _cluster_up(brokers) if brokers > 1 else _broker_up()
    write_state(cfg.local.state_dir, state)

    def human() -> None:
        what = f"cluster of {brokers}" if brokers > 1 else ""
        click.echo(
            f"Kafka {kafka_version()} {what} up at {state['bootstrap']} "
            f"in {state['startup_seconds']:.1f} s".replace("  ", " ")
        )
        if brokers > 1:
            click.echo(f"clients: export BACKBONE_KAFKA_BOOTSTRAP={state['bootstrap']}")

    emit(state, as_json, human)


def _broker_up() -> dict[str, Any]:
    cfg = settings()
    options = BrokerOptions(
        port=cfg.local.kafka_port,
        heap=cfg.local.kafka_heap,
        data_dir=(cfg.local.state_dir / "kafka").resolve(),
        die_with_parent=False,
    )
    broker = LocalBroker(options)
    try:
        seconds = broker.start()
    except InfraError as exc:
        fail(str(exc))
    assert broker.process is not None
    return {
        "pid": broker.process.pid,
        "bootstrap": broker.bootstrap,
        "version": kafka_version(),
        "data_dir": str(options.data_dir),
        "startup_seconds": round(seconds, 2),
        "owner": "backbone kafka up",
    }


def _cluster_up(brokers: int) -> dict[str, Any]:
    cfg = settings()
    data_dir = (cfg.local.state_dir / f"kafka-cluster-{brokers}").resolve()
    cluster = LocalCluster(
        ClusterOptions(
            size=brokers,
            heap=cfg.local.kafka_heap,
            data_dir=data_dir,
            base_port=cfg.local.kafka_port,
            die_with_parent=False,
        )
    )
    try:
        seconds = cluster.start()
    except InfraError as exc:
        fail(str(exc))
    pids = cluster.pids()
    return {
        "pid": pids[1],
        "bootstrap": cluster.bootstrap,
        "version": kafka_version(),
        "data_dir": str(data_dir),
        "startup_seconds": round(seconds, 2),
        "owner": "backbone kafka up",
        "brokers": brokers,
        "nodes": {
            str(n): {"pid": pids[n], "bootstrap": node.bootstrap, "data_dir": str(node.root)}
            for n, node in cluster.nodes.items()
        },
    }


@kafka.command()
def down() -> None:
    """Stop the detached broker (SIGTERM, then SIGKILL after 20 s)."""
    state = _read_state()
    if state is None:
        click.echo("no local broker running")
        return
    if state.get("owner") == "backbone up":
        fail(
            f"the broker at {state['bootstrap']} belongs to `backbone up` (`make run`, pid "
            f"{state.get('owner_pid')}): stop that with Ctrl-C, which stops the broker too"
        )
    pids = pids_of(state)
    for pid in pids:  # every node at once: one by one, the last would wait for a lost quorum
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _running(pid):
            _signal(pid, signal.SIGKILL)
    forget_state(settings().local.state_dir, int(str(state["pid"])))
    click.echo(f"stopped {'cluster' if len(pids) > 1 else 'broker'} {state['bootstrap']}")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@kafka.command()
@click.option("--topic", "prefix", default=None, help="Only topics whose name starts with this.")
@json_option
def status(prefix: str | None, as_json: bool) -> None:
    """The cluster's nodes, and the leader and in-sync replicas of every topic partition."""
    cfg = settings()
    local = _read_state()
    kafka = cfg.kafka
    if local is not None and not cfg.external_kafka:  # a local cluster: reach any live node
        kafka = kafka.model_copy(update={"bootstrap": str(local["bootstrap"])})
    ok = metadata_ok(kafka, timeout=5.0)
    state = asyncio.run(_state(kafka, prefix)) if ok else None
    controller = _local_controller(local)
    data = {
        "bootstrap": kafka.bootstrap,
        "reachable": ok,
        "local": local,
        "active_controller": controller,
        "brokers": [vars(b) for b in state.brokers] if state else [],
        "partitions": [vars(p) for p in state.partitions] if state else [],
    }
    emit(data, as_json, lambda: _print_status(kafka.bootstrap, ok, local, state, controller))
    if not ok:
        raise SystemExit(EXIT_UNAVAILABLE)


async def _state(kafka: Any, prefix: str | None) -> ClusterState | None:
    try:
        every = await cluster_state(kafka, topics=[])
        from streams.inspect import topic_names

        names = [t for t in await topic_names(kafka) if prefix is None or t.startswith(prefix)]
        topics = await cluster_state(kafka, topics=names)
    except BackboneError as exc:
        fail(str(exc), code=EXIT_UNAVAILABLE)
    return ClusterState(every.cluster_id, every.controller_id, every.brokers, topics.partitions)


def _local_controller(local: dict[str, Any] | None) -> int | None:
    """The active KRaft controller of a local cluster (from its nodes' quorum state)."""
    if local is None or not local.get("nodes"):
        return None
    dirs = {
        int(n): Path(node["data_dir"]) / "data"
        for n, node in local["nodes"].items()
        if _running(int(node["pid"]))
    }
    return active_controller(dirs)


def _print_status(
    bootstrap: str,
    ok: bool,
    local: dict[str, Any] | None,
    state: ClusterState | None,
    controller: int | None,
) -> None:
    click.echo(f"{bootstrap}: {'up' if ok else 'unreachable'}")
    if local is not None:
        click.echo(
            f"local {'cluster' if local.get('nodes') else 'broker'} pid {local['pid']} started by "
            f"{local.get('owner', 'backbone')}"
            + (f" (pid {local['owner_pid']})" if local.get("owner_pid") else "")
        )
    if state is None:
        return
    alive = {b.node_id: b for b in state.brokers}
    nodes: dict[int, str] = {b.node_id: b.address for b in state.brokers}
    for n, node in ((local or {}).get("nodes") or {}).items():
        nodes.setdefault(int(n), str(node["bootstrap"]))
    click.echo(f"cluster {state.cluster_id}: {len(alive)} of {len(nodes)} brokers up")
    for n in sorted(nodes):
        role = " active controller" if n == controller else ""
        click.echo(f"  node {n}  {nodes[n]}  {'up' if n in alive else 'DOWN'}{role}")
    if not state.partitions:
        return
    width = max(len(f"{p.topic}[{p.partition}]") for p in state.partitions)
    under = sum(p.under_replicated for p in state.partitions)
    click.echo(f"{len(state.partitions)} partitions, {under} under-replicated")
    for p in state.partitions:
        name = f"{p.topic}[{p.partition}]".ljust(width)
        flag = "  UNDER-REPLICATED" if p.under_replicated else ""
        leader = str(p.leader) if p.leader >= 0 else "none"
        click.echo(
            f"  {name}  leader {leader}  replicas {','.join(map(str, p.replicas))}  "
            f"isr {','.join(map(str, p.in_sync))}{flag}"
        )
