"""Shutdown always completes: a last-resort deadline for a process that is stopping.

Each service's stop is bounded (``infra.stack.STOP_TIMEOUT_S``), but what runs after it is not:
``asyncio.Runner`` cancels the tasks left over and waits for them, then waits for the default
executor's threads, and Python 3.11 bounds neither. A long-running command arms this watchdog when it
starts to stop. If the process is still alive at the deadline, it writes every thread's stack and the
event loop's pending tasks to stderr (so the hang can be fixed) and exits with :data:`EXIT_HUNG`.

Only :func:`enabled` (the CLI's ``run``) lets :func:`arm` start a timer: a library or a test that
calls the same coroutines in its own process is never killed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

#: the exit code of a process whose shutdown did not complete by the deadline
EXIT_HUNG = 70

_lock = threading.Lock()
_enabled = False
_timer: threading.Timer | None = None


@contextlib.contextmanager
def enabled() -> Iterator[None]:
    """While inside, :func:`arm` arms; leaving disarms (the process finished stopping in time)."""
    global _enabled
    with _lock:
        _enabled = True
    try:
        yield
    finally:
        disarm()
        with _lock:
            _enabled = False


def arm(deadline_s: float, what: str) -> None:
    """From now on, ``what`` (e.g. "the gateway") has ``deadline_s`` to exit; arming twice keeps
    the first deadline."""
    global _timer
    loop = asyncio.get_running_loop()
    with _lock:
        if not _enabled or _timer is not None:
            return
        _timer = threading.Timer(deadline_s, _hung, args=(deadline_s, what, loop))
        _timer.daemon = True
        _timer.start()


def disarm() -> None:
    global _timer
    with _lock:
        timer, _timer = _timer, None
    if timer is not None:
        timer.cancel()


def _hung(deadline_s: float, what: str, loop: asyncio.AbstractEventLoop) -> None:
    err = sys.stderr
    with contextlib.suppress(Exception):
        err.write(
            f"error     {what} did not finish stopping within {deadline_s:.0f} s; exiting "
            f"{EXIT_HUNG}. Pending tasks and thread stacks follow.\n"
        )
        # read from another thread while the loop may still run: a diagnostic, best effort
        for task in list(asyncio.all_tasks(loop)):
            err.write(f"--- task {task.get_name()}: {task.get_coro()!r}\n")
            task.print_stack(limit=12, file=err)
        err.flush()
        faulthandler.dump_traceback(file=err, all_threads=True)
        err.flush()
    os._exit(EXIT_HUNG)
