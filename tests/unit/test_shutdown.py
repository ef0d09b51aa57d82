"""A stopping process always exits: bounded service stops, and the last-resort deadline of
infra.shutdown when what follows them hangs (a thread the Runner's close would wait on for ever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import infra.stack as stack
    from infra.cli._app import run

    stack.STOP_TIMEOUT_S = 1.0
    stack.SHUTDOWN_GRACE_S = 2.0
    MODE = sys.argv[1]

    class Service:
        name = "sleepy"

        async def start(self):
            pass

        async def stop(self):
            if MODE == "hung-stop":
                await asyncio.sleep(3600)  # cancelled by the stop's bound
            elif MODE == "hung-thread":
                # the Runner's close waits for the default executor's threads: for ever here
                asyncio.get_running_loop().run_in_executor(None, time.sleep, 3600)

        def describe(self):
            return "sleepy"

    def started():
        print("ready", flush=True)

    try:
        run(stack.serve_service(Service(), lambda line: print(line, file=sys.stderr), started=started))
    except stack.StackFailedError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        sys.exit(1)
    """
)


def _stop(mode: str) -> tuple[int, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the process did not exit within 60 s of SIGTERM")
    return proc.returncode, err, time.monotonic() - began


def test_a_clean_stop_exits_zero() -> None:
    code, err, _ = _stop("clean")
    assert code == 0, err


def test_a_stop_that_hangs_is_abandoned_and_the_exit_says_so() -> None:
    code, err, _ = _stop("hung-stop")
    assert code == 1, err
    assert "sleepy    did not stop within 1 s; abandoned" in err
    assert "did not stop cleanly" in err


def test_a_hang_after_the_stop_hits_the_deadline_with_the_stacks() -> None:
    code, err, _ = _stop("hung-thread")
    assert code == 70, err
    assert "the sleepy did not finish stopping within 3 s" in err
    assert "time.sleep" in err or "in sleep" in err or "Thread" in err, err
