"""The ``backbone`` command: the one place that wires every layer together.

Commands live in one module each and are imported only when run (see ``infra.cli._app``);
exit codes are documented there and in ``backbone --help``.
"""

from __future__ import annotations

from infra.cli._app import main

__all__ = ["main"]
