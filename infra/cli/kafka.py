"""``backbone kafka up|down|status|fetch``: a detached local broker for development."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

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


@main.group()
def kafka() -> None:
    """The local Kafka broker (fetched from Maven Central, run with java)."""


def _state_file() -> Path:
    return settings().local.state_dir / "kafka.json"


def _read_state() -> dict[str, object] | None:
    path = _state_file()
    if not path.exists():
        return None
    state: dict[str, object] = json.loads(path.read_text())
    pid = state.get("pid")
    try:
        os.kill(int(str(pid)), 0)
    except (ProcessLookupError, ValueError):
        path.unlink()  # stale: the broker is gone
        return None
    return state


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
    }
    _state_file().write_text(json.dumps(state))
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
    _state_file().unlink(missing_ok=True)
    click.echo(f"stopped broker {state['bootstrap']}")


@kafka.command()
@json_option
def status(as_json: bool) -> None:
    """Is the configured cluster answering metadata requests?"""
    cfg = settings()
    ok = metadata_ok(cfg.kafka.bootstrap, timeout=3.0)
    state = _read_state()
    data = {"bootstrap": cfg.kafka.bootstrap, "reachable": ok, "local": state}
    emit(
        data,
        as_json,
        lambda: click.echo(f"{cfg.kafka.bootstrap}: {'up' if ok else 'unreachable'}"),
    )
    if not ok:
        raise SystemExit(EXIT_UNAVAILABLE)
