"""``backbone gateway`` with a CPU-time profiler switched by signals, for :mod:`benchmarks.profile_ingest`.

Run as ``python -m benchmarks._profiled_gateway OUT``: the gateway of the environment's settings
(one process). SIGUSR1 starts cProfile with :func:`time.process_time` as its clock (time spent
waiting for Kafka or for the next request is not counted); SIGUSR2 stops it and writes the
profile to ``OUT`` (then ``OUT.done`` marks it complete). SIGTERM stops the gateway as usual.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> None:
    out = Path(sys.argv[1])
    sys.argv = [sys.argv[0], "gateway"]
    profile = cProfile.Profile(time.process_time)

    def start(_sig: int, _frame: FrameType | None) -> None:
        profile.enable()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        profile.disable()
        profile.dump_stats(str(out))
        out.with_suffix(".done").touch()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from infra.cli._app import main as backbone

    backbone()


if __name__ == "__main__":
    main()
