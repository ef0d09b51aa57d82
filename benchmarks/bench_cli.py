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

from benchmarks._harness import Row, Stat, scaled

REPEATS = scaled(7, 3)


def _samples_s(args: list[str]) -> list[float]:
    subprocess.run(args, check=True, capture_output=True)  # warm-up: page cache, .pyc files
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return times


def _median_s(args: list[str]) -> float:
    return statistics.median(_samples_s(args))


def _commands() -> tuple[tuple[str, list[str], float], ...]:
    python = sys.executable
    return (
        ("backbone --help", [python, "-m", "infra.cli", "--help"], 0.5),
        ("backbone topics list", [python, "-m", "infra.cli", "topics", "list"], 1.0),
        ("python -c 'import streams'", [python, "-c", "import streams"], 0.5),
    )


def rows() -> list[Row]:
    baseline = Stat.of([s * 1000 for s in _samples_s([sys.executable, "-c", "pass"])])
    params = {"repeats": REPEATS, "warmup": 1, "concurrency": 1}
    return [
        Row(f"cli: {label}", "ms", Stat.of([s * 1000 for s in _samples_s(args)]), baseline,
            "python -c pass", params, target=f"< {target * 1000:.0f} ms")
        for label, args, target in _commands()
    ]  # fmt: skip


def main() -> None:
    python = sys.executable
    baseline = _median_s([python, "-c", "pass"])
    print(f"python -c pass (baseline)        {baseline * 1000:7.0f} ms")
    for label, args, target in _commands():
        took = _median_s(args)
        verdict = "ok" if took < target else f"over the {target:g} s target"
        print(f"{label:<32} {took * 1000:7.0f} ms  ({took / baseline:.1f}x baseline; {verdict})")


if __name__ == "__main__":
    main()
