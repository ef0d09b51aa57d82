"""Runs ONE third-party plugin in its own process (``python -I _host.py FILE``; stdlib only).

Protocol: JSON lines. The parent writes ``{"id", "operation", "payload"}``; the host answers
``{"id", "ok": true, "result": {...}}`` or ``{"id", "ok": false, "error": "...", "retriable": bool}``.
The first line the host writes is the plugin's manifest (``{"manifest": {...}}``), so loading and
validating are the same step. Nothing here may import the worker: a plugin that crashes, hangs or
eats memory takes down only this process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"backbone_plugin_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    module = _load(Path(sys.argv[1]))
    manifest = getattr(module, "MANIFEST", None)
    execute = getattr(module, "execute", None)
    if not isinstance(manifest, dict) or not callable(execute):
        _write({"invalid": "a plugin defines MANIFEST (a dict) and execute(operation, payload)"})
        return
    _write({"manifest": manifest})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = execute(request["operation"], request["payload"])
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            _write({"id": request["id"], "ok": True, "result": result})
        except Exception as exc:  # the plugin's own error: report it, keep serving
            retriable = bool(getattr(exc, "retriable", False))
            _write(
                {
                    "id": request["id"],
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "retriable": retriable,
                }
            )


async def _await(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    main()
