"""Several gateway processes on one port (``BACKBONE_GATEWAY_WORKERS`` > 1), for when one core
is what bounds the ingest edge.

Each worker is ``backbone gateway --worker-of <parent pid>``: a whole gateway (every route, its own
producers, registry client and seen-set) listening with ``SO_REUSEPORT``, so the kernel spreads
connections over the workers. A request is answered by one process from start to end, so every
guarantee of a single gateway holds per request (2xx only after Kafka acknowledged, 503 = not
written). Readiness (``GET /readyz``) is answered by the worker a connection landed on, about its
own producer.

Lifecycle, all of it in :class:`GatewayWorkers`:

- start: the parent holds the port with a bound, *not listening* ``SO_REUSEPORT`` socket (no
  connection lands on it; port 0 becomes one real port every worker binds), starts the workers and
  returns once every one said it serves (a ``ready`` line on its stdout). A worker that exits or
  stays silent for ``start_timeout_s`` stops them all and start raises;
- while running: a worker that exits is never restarted silently; it is reported as fatal (the
  event loop's exception handler with ``FATAL``: ``backbone up`` and ``backbone gateway`` stop
  everything and exit non-zero);
- stop: SIGTERM to every worker (each drains and stops like a single gateway), SIGKILL to any left
  after ``stop_timeout_s``;
- the parent killed (even ``kill -9``): each worker asked the kernel for SIGTERM when its parent
  dies (``PR_SET_PDEATHSIG``), so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from connectors.gateway.settings import GatewaySettings
from infra.errors import InfraError
from streams.supervise import FATAL

log = logging.getLogger(__name__)

#: what a worker prints on its stdout once it serves
READY_LINE = b"ready"


class GatewayWorkersError(InfraError):
    """A gateway worker process did not start, or exited while it should have been serving."""

    code = "gateway_worker_failed"


def die_with_parent(parent_pid: int) -> None:
    """In a worker: SIGTERM from the kernel when the parent dies; exit now if it already has."""
    if sys.platform == "linux":
        # PR_SET_PDEATHSIG = 1 (as the local broker does)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        raise SystemExit(1)


def _fatal(message: str) -> None:
    asyncio.get_running_loop().call_exception_handler({"message": message, FATAL: True})


def _reserve(host: str, port: int) -> socket.socket:
    """Hold ``host:port`` (resolving 0 to a real port) without taking connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayWorkersError(f"cannot bind the gateway port {host}:{port}: {exc}") from exc
    return sock


class GatewayWorkers:
    """``count`` gateway processes on ``settings.host:settings.port``; a stack service."""

    name = "gateway"

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        start_timeout_s: float = 180.0,
        stop_timeout_s: float = 30.0,
        on_failure: Callable[[str], None] = _fatal,
    ) -> None:
        self._settings = settings
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._on_failure = on_failure
        self._socket: socket.socket | None = None
        self._procs: list[asyncio.subprocess.Process] = []
        self._watches: list[asyncio.Task[None]] = []
        self._stopping = False
        self.bound_port: int | None = None

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    async def start(self) -> None:
        self._stopping = False
        self._socket = _reserve(self._settings.host, self._settings.port)
        self.bound_port = int(self._socket.getsockname()[1])
        env = {
            **os.environ,
            "BACKBONE_GATEWAY_WORKERS": "1",
            "BACKBONE_GATEWAY_HOST": self._settings.host,
            "BACKBONE_GATEWAY_PORT": str(self.bound_port),
        }
        try:
            for _ in range(self._settings.workers):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "infra.cli", "gateway", "--worker-of", str(os.getpid()),
                    env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                self._procs.append(proc)
            async with asyncio.timeout(self._start_timeout_s):
                await asyncio.gather(*(self._ready(proc) for proc in self._procs))
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, TimeoutError):
                raise GatewayWorkersError(
                    f"the gateway workers did not all start within {self._start_timeout_s:g} s"
                ) from exc
            raise
        self._watches = [
            asyncio.create_task(self._watch(proc), name=f"gateway-worker-{proc.pid}")
            for proc in self._procs
        ]

    async def _ready(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if line.strip() == READY_LINE:
                return
        code = await proc.wait()
        raise GatewayWorkersError(
            f"gateway worker {proc.pid} exited with code {code} before serving (its error is above)"
        )

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while await proc.stdout.readline():  # drain: a worker says nothing more, but never block it
            pass
        code = await proc.wait()
        if not self._stopping:
            self._on_failure(
                f"gateway worker {proc.pid} exited with code {code}; stopping the gateway"
            )

    async def stop(self) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``stop_timeout_s``; safe to repeat."""
        self._stopping = True
        live = [proc for proc in self._procs if proc.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if live:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(proc.wait()) for proc in live],
                timeout=self._stop_timeout_s,
            )
            for proc in live:
                if proc.returncode is None:
                    log.warning("gateway worker %d did not stop in time; killed", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(proc.wait() for proc in live))
            for future in pending:
                future.cancel()
        for watch in self._watches:
            watch.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        self._watches, self._procs = [], []
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def describe(self) -> str:
        port = self.bound_port or self._settings.port
        return (
            f"http://{self._settings.host}:{port} ({self._settings.workers} processes sharing the "
            f"port: pids {', '.join(map(str, self.pids))}; POST /v1/events/<type>, /openapi.json)"
        )
