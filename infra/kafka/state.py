"""Which local broker is running, for ``backbone kafka status|down`` and ``backbone up``.

Whoever starts a local broker (``kafka up`` detached, or ``backbone up`` / ``make run`` in the
foreground) records it in ``<state dir>/kafka.json``; a record whose process is gone is stale and
dropped when read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.config import Settings
    from infra.kafka.broker import LocalBroker


def state_file(state_dir: Path) -> Path:
    return state_dir / "kafka.json"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_file(state_dir)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not any(_alive(pid) for pid in pids_of(state)):
        path.unlink(missing_ok=True)  # stale: the broker (every node of the cluster) is gone
        return None
    return state


def pids_of(state: dict[str, Any]) -> list[int]:
    """The recorded processes: one broker's, or every node's of a local cluster."""
    nodes = state.get("nodes") or {}
    if nodes:
        return [int(node["pid"]) for node in nodes.values()]
    try:
        return [int(str(state.get("pid")))]
    except ValueError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file(state_dir).write_text(json.dumps(state))


def forget_state(state_dir: Path, pid: int) -> None:
    """Remove the record if it still names ``pid`` (never someone else's broker)."""
    current = read_state(state_dir)
    if current is not None and int(current.get("pid", -1)) == pid:
        state_file(state_dir).unlink(missing_ok=True)


def record_broker(settings: Settings, broker: LocalBroker, owner: str) -> None:
    """Record a broker this process started, so ``kafka status|down`` can see it."""
    from infra.kafka.broker import kafka_version

    assert broker.process is not None
    write_state(
        settings.local.state_dir,
        {
            "pid": broker.process.pid,
            "bootstrap": broker.bootstrap,
            "version": kafka_version(),
            "data_dir": str(broker.root),
            "owner": owner,
            "owner_pid": os.getpid(),
        },
    )


def forget_broker(settings: Settings, broker: LocalBroker) -> None:
    if broker.process is not None:
        forget_state(settings.local.state_dir, broker.process.pid)
