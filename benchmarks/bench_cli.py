"""Start-up cost of the ``backbone`` command (issue 14 item 12): ``backbone --help``, a command
that needs no cluster (``topics list``), and ``import streams``.

Baseline, same run: ``python -c pass``, the interpreter's own start-up, which no command can
beat. Each figure is the median of several fresh processes. Targets: ``--help`` under 0.5 s,
``topics list`` under 1 s (before any Kafka round trip).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

REPEATS = 7


def _median_s(args: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    python = sys.executable
    baseline = _median_s([python, "-c", "pass"])
    print(f"python -c pass (baseline)        {baseline * 1000:7.0f} ms")
    for label, args, target in (
        ("backbone --help", [python, "-m", "infra.cli", "--help"], 0.5),
        ("backbone topics list", [python, "-m", "infra.cli", "topics", "list"], 1.0),
        ("python -c 'import streams'", [python, "-c", "import streams"], 0.5),
    ):
        took = _median_s(args)
        verdict = "ok" if took < target else f"over the {target:g} s target"
        print(f"{label:<32} {took * 1000:7.0f} ms  ({took / baseline:.1f}x baseline; {verdict})")


if __name__ == "__main__":
    main()
