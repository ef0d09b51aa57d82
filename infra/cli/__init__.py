"""The ``backbone`` command: the one place that wires every layer together.

Exit codes: 0 success; 1 the operation failed or a check found a problem; 2 bad usage;
3 Kafka (or another required service) is unreachable.
"""

from __future__ import annotations

from infra.cli import (  # noqa: F401  (registers the commands)
    alerts,
    calls,
    doctor,
    events,
    gateway,
    kafka,
    plugins,
    projections,
    registry,
    report,
    schemas,
    stack,
    topics,
    webhooks,
    ws,
)
from infra.cli._app import main

__all__ = ["main"]
