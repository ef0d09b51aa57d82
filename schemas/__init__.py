"""Backbone: schemas layer. The ``.avsc`` files of every event type, and their released history.

schemas/<family>/<EventName>.avsc                   the current contract (generated from the
                                                    models by `backbone schemas generate`)
schemas/history/<family>/<EventName>/v<N>.avsc      every released version, oldest first
"""

from __future__ import annotations

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMAS_DIR / "history"

__all__ = ["HISTORY_DIR", "SCHEMAS_DIR"]
