"""``backbone kafka up|down|status|fetch``: a detached local broker for development."""

from __future__ import annotations

import os
import signal
import time

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
from infra.kafka.state import forget_state, read_state, write_state


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
@json_option
def up(as_json: bool) -> None:
    """Start a detached broker on 127.0.0.1 (BACKBONE_KAFKA_PORT, default 9092)."""
    cfg = settings()
    running = _read_state()
    if running is not None:
        emit(running, as_json, lambda: click.echo(f"already running at {running['bootstrap']}"))
        return
    cfg.local.state_dir.mkdir(parents=True, exist_ok=True)
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
    state = {
        "pid": broker.process.pid,
        "bootstrap": broker.bootstrap,
        "version": kafka_version(),
        "data_dir": str(options.data_dir),
        "startup_seconds": round(seconds, 2),
        "owner": "backbone kafka up",
    }
    write_state(cfg.local.state_dir, state)
    emit(
        state,
        as_json,
        lambda: click.echo(f"Kafka {kafka_version()} up at {broker.bootstrap} in {seconds:.1f} s"),
    )


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
    pid = int(str(state["pid"]))
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    forget_state(settings().local.state_dir, pid)
    click.echo(f"stopped broker {state['bootstrap']}")


@kafka.command()
@json_option
def status(as_json: bool) -> None:
    """Is the configured cluster answering metadata requests?"""
    cfg = settings()
    ok = metadata_ok(cfg.kafka.bootstrap, timeout=3.0)
    state = _read_state()
    data = {"bootstrap": cfg.kafka.bootstrap, "reachable": ok, "local": state}

    def human() -> None:
        click.echo(f"{cfg.kafka.bootstrap}: {'up' if ok else 'unreachable'}")
        if state is not None:
            click.echo(
                f"local broker pid {state['pid']} started by {state.get('owner', 'backbone')}"
                + (f" (pid {state['owner_pid']})" if state.get("owner_pid") else "")
            )

    emit(data, as_json, human)
    if not ok:
        raise SystemExit(EXIT_UNAVAILABLE)
