"""A plugin's process: started with resource limits, called with a timeout, restarted after a crash.

Limits are set in the child before it runs any plugin code (``RLIMIT_AS`` for memory,
``RLIMIT_CPU`` for CPU seconds); a call that does not answer within ``timeout_s`` kills the
process. Either way the caller gets a typed, retriable error and the next call starts a fresh
process: the worker is never at the plugin's mercy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.errors import CallError, ProviderTimeoutError

_STDERR_TAIL = 4096

#: Run as a plain script, so the plugin's process imports nothing of Backbone (fast, isolated).
HOST = Path(__file__).with_name("_host.py")


class PluginCrashedError(CallError):
    retriable = True
    code = "plugin_crashed"


class PluginInvalidError(CallError):
    code = "plugin_invalid"


class PluginCallError(CallError):
    """The plugin ran and raised; ``retriable`` comes from the plugin's own error."""

    code = "plugin_error"

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 512
    cpu_s: int = 60
    start_timeout_s: float = 10.0


def _limit(memory_mb: int, cpu_s: int) -> None:  # pragma: no cover - runs in the child
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))


class PluginProcess:
    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.path = path
        self.limits = limits or Limits()
        self.manifest: dict[str, Any] = {}
        self.crashes = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count()
        self._lock = asyncio.Lock()
        self._stderr = bytearray()
        self._drain: asyncio.Future[None] | None = None

    async def _keep_stderr_tail(self, stream: asyncio.StreamReader) -> None:
        """Read the plugin's stderr as it comes (so it never blocks on a full pipe), keeping
        the last few KB: the cause shown when the process dies."""
        while chunk := await stream.read(4096):
            self._stderr += chunk
            del self._stderr[:-_STDERR_TAIL]

    async def cause(self) -> str:
        """The last line the plugin's process wrote to stderr (its traceback's last line)."""
        if self._drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain), 2.0)
        lines = [ln.strip() for ln in self._stderr.decode(errors="replace").splitlines()]
        return next((ln for ln in reversed(lines) if ln), "")

    async def start(self) -> dict[str, Any]:
        """Start the process and read its manifest (this is also how a plugin is validated)."""
        lim = self.limits
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no user site, no PYTHON* variables, no cwd on sys.path
            str(HOST),
            str(self.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=lambda: _limit(lim.memory_mb, lim.cpu_s),
        )
        assert self._proc.stderr is not None
        self._stderr = bytearray()
        self._drain = asyncio.ensure_future(self._keep_stderr_tail(self._proc.stderr))
        try:
            first = await self._read(lim.start_timeout_s)
        except CallError:
            await self.stop()
            raise
        if "manifest" not in first:
            await self.stop()
            raise PluginInvalidError(f"{self.path.name}: {first.get('invalid', 'no manifest')}")
        self.manifest = dict(first["manifest"])
        return self.manifest

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain), 2.0)
            self._drain.cancel()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def call(
        self, operation: str, payload: dict[str, Any], timeout_s: float | None = None
    ) -> Any:
        async with self._lock:  # one request at a time per process keeps the protocol trivial
            if not self.running:
                await self.start()
            assert self._proc is not None
            assert self._proc.stdin is not None
            request_id = next(self._ids)
            line = json.dumps({"id": request_id, "operation": operation, "payload": payload})
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                await self._proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                await self._crashed()
                raise PluginCrashedError(f"plugin {self.path.stem} is gone") from exc
            answer = await self._read(
                min(timeout_s or self.limits.timeout_s, self.limits.timeout_s)
            )
        if answer.get("ok"):
            return answer.get("result")
        raise PluginCallError(
            str(answer.get("error", "plugin error")), retriable=bool(answer.get("retriable"))
        )

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self._proc.stdout.readline(), timeout_s)
        except TimeoutError as exc:
            await self._crashed()
            raise ProviderTimeoutError(
                f"plugin {self.path.stem} did not answer within {timeout_s:g} s (killed)"
            ) from exc
        if not raw:
            await self._crashed()
            cause = await self.cause()
            raise PluginCrashedError(
                f"plugin {self.path.stem} exited (crashed or hit a limit)"
                + (f": {cause}" if cause else "")
            )
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self._crashed()
            raise PluginCrashedError(f"plugin {self.path.stem} wrote garbage") from exc
        return dict(message)

    async def _crashed(self) -> None:
        self.crashes += 1
        await self.stop()
