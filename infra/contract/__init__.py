"""The event contract on disk: generating the ``.avsc`` files, the drift check and the
evolution gate (``backbone schemas generate|check|release``)."""

from __future__ import annotations

from infra.contract.evolution import Problem, check, release
from infra.contract.files import avsc_path, drift, generate, render

__all__ = ["Problem", "avsc_path", "check", "drift", "generate", "release", "render"]
