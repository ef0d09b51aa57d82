"""Run every benchmark module (``make bench``; ``make bench-quick``; ``make bench-compare``).

    python -m benchmarks [--quick] [--out FILE] [--no-append] [bench_x ...]
    python -m benchmarks --compare

One broker is started for the whole run and shared by every module (``BACKBONE_KAFKA_BOOTSTRAP``
names an existing one instead). Kafka's own tools (``bench_floor``) run first, on that broker, so
every other figure can be given as a fraction of them. A module that fails is reported in the table
and makes the run exit non-zero; the others still run. The run is written as JSON to ``--out``
(default ``benchmarks/out/latest.json``) and appended as one dated line to
``benchmarks/results.jsonl`` (unless ``--no-append``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import benchmarks
from benchmarks._harness import (
    BROKER_START_TIMEOUT_S,
    RESULTS,
    Row,
    append_result,
    compare,
    markdown_table,
    module_times,
    parameters,
    read_results,
    row_from_json,
    run_record,
    table,
)

#: Run first: the floors every other figure is compared with.
FIRST = "bench_floor"


def modules() -> list[str]:
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    return sorted(names, key=lambda name: name != FIRST)


def _meta() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "commit": commit or "?",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0],
    }


def preload(names: list[str]) -> list[str]:
    """Import the bench modules ``names`` now (a run does it while its broker starts); returns
    those that failed to import, which fail again, and are reported, when their turn comes."""
    failed = []
    for name in names:
        try:
            importlib.import_module(f"benchmarks.{name}")
        except Exception:  # reported by _run_module, which imports it again
            failed.append(name)
    return failed


def _run_modules(names: list[str]) -> tuple[list[Row], dict[str, str], dict[str, float]]:
    rows: list[Row] = []
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    began = time.monotonic()
    for n, name in enumerate(names, 1):
        print(
            f"== [{n}/{len(names)}] {name}  (run time so far {time.monotonic() - began:.0f} s)",
            flush=True,
        )
        started = time.monotonic()
        try:
            found = _run_module(name)
        except Exception as exc:  # a failed benchmark is reported, the others still run
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"   {name} FAILED: {failures[name]}", flush=True)
            continue
        finally:
            seconds[name] = round(time.monotonic() - started, 1)
        rows.extend(found)
        print(f"   {name}: {len(found)} figures in {seconds[name]:.0f} s", flush=True)
    return rows, failures, seconds


def _run_module(name: str) -> list[Row]:
    module = importlib.import_module(f"benchmarks.{name}")
    if not hasattr(module, "rows"):  # not converted yet: its own printout only
        print(f"   {name} has no rows(); running its main(), not in the table", flush=True)
        module.main()
        return []
    return [dataclasses.replace(row, module=name) for row in module.rows()]


#: The run's broker keeps its data in memory when there is room: its data is thrown away at the
#: end, and on a shared disk the fsyncs of its metadata log (every topic a module creates) made
#: creating the catalogue's 190 partitions take 3.4-3.6 s against 2.0-2.4 s on tmpfs (load 10).
#: Kafka does not fsync the records of data topics either way.
MEMORY_DIR = Path("/dev/shm")
MEMORY_MIN_FREE = 8 * 2**30


def broker_data_dir(base: Path = MEMORY_DIR, min_free: int = MEMORY_MIN_FREE) -> Path | None:
    """A fresh folder for the run's broker under ``base`` (tmpfs) when it has ``min_free`` bytes
    free; None (the broker's own temporary folder, on disk) otherwise."""
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        return None
    if free < min_free:
        return None
    return Path(tempfile.mkdtemp(prefix="backbone-bench-kafka-", dir=base))


def _with_broker(
    names: list[str], meta: dict[str, str]
) -> tuple[list[Row], dict[str, str], dict[str, float]]:
    if os.environ.get("BACKBONE_KAFKA_BOOTSTRAP"):
        meta["broker"] = "BACKBONE_KAFKA_BOOTSTRAP"
        preload(names)
        return _run_modules(names)
    from infra.kafka.broker import BrokerOptions, LocalBroker

    data = broker_data_dir()
    meta["broker"] = f"local, data on {'tmpfs' if data else 'disk'}"
    broker = LocalBroker(BrokerOptions(data_dir=data))
    print(f"starting the shared Kafka broker on {broker.bootstrap} ({meta['broker']}) ...",
          flush=True)  # fmt: skip
    began = time.monotonic()
    try:
        broker.launch()
        preload(names)  # while the JVM starts: no module pays for its imports in its own time
        broker.wait_ready(BROKER_START_TIMEOUT_S, began)
        print(f"   broker ready in {time.monotonic() - began:.0f} s", flush=True)
        os.environ["BACKBONE_KAFKA_BOOTSTRAP"] = broker.bootstrap  # every module and subprocess
        return _run_modules(names)
    finally:
        os.environ.pop("BACKBONE_KAFKA_BOOTSTRAP", None)
        # SIGKILL, not a controlled shutdown: the broker and its data are thrown away next, and
        # flushing every partition of the run took 17 s on a loaded box (nothing is lost that
        # a benchmark still reads: every module has finished)
        stopping = time.monotonic()
        broker.kill(signal.SIGKILL)
        killed = time.monotonic()
        broker.stop()  # the process is gone: this removes its data folder (when its own)
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)
        print(f"   broker killed in {killed - stopping:.1f} s, its data removed in "
              f"{time.monotonic() - killed:.1f} s", flush=True)  # fmt: skip


def _compare(path: Path) -> int:
    results = read_results(path)
    if len(results) < 2:
        print(f"{path} holds {len(results)} run(s); `make bench` adds one per run, compare needs 2")
        return 0
    print(compare(results[-2], results[-1]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("names", nargs="*", help="bench modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (make bench-quick)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/latest.json"))
    parser.add_argument("--no-append", action="store_true", help=f"do not append to {RESULTS.name}")
    parser.add_argument("--compare", action="store_true", help="latest run vs the previous one")
    parser.add_argument("--markdown", action="store_true", help="latest run as a markdown table")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(args.results)
    if args.markdown:  # the latest run as the README's table
        latest = read_results(args.results)[-1]
        print(f"{latest['date']}, {'quick' if latest['quick'] else 'full'} run, commit "
              f"{latest.get('commit', '?')}, load average {latest.get('load', '?')} on {latest.get('cpus', '?')} CPUs\n")  # fmt: skip
        print(markdown_table([row_from_json(row) for row in latest["rows"]]))
        return 0
    known = modules()
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(known)}")
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    began = time.monotonic()
    broker: dict[str, str] = {}
    rows, failures, seconds = _with_broker(
        [n for n in known if not args.names or n in args.names], broker
    )
    total = time.monotonic() - began
    record = run_record(
        rows,
        quick_run=bool(os.environ.get("BENCH_QUICK")),
        failures=failures,
        meta={**_meta(), **broker, "load_before": load_before, "seconds": round(total),
              "module_seconds": seconds},
    )  # fmt: skip
    print()
    print(
        f"== results ({'quick' if record['quick'] else 'full'} run, {record['seconds']} s, "
        f"load average before {load_before}, after {record['load']}, {record['cpus']} CPUs)"
    )
    print(table(rows))
    print("measured on:")
    print(parameters(rows))
    print(
        "ratio: our speed relative to the baseline (1.00 = as fast; for latencies baseline/ours);"
    )
    print(
        "of floor: the same against Kafka's own tool on the same broker; ±: half the spread of n repeats"
    )
    print("wall time per module:")
    print(module_times(seconds, total))
    for name, reason in failures.items():
        print(f"FAILED {name}: {reason}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown_table(rows) + "\n")
    print(f"written: {args.out} and {args.out.with_suffix('.md')}")
    if not args.no_append:
        append_result(record, args.results)
        print(f"appended to {args.results} (`make bench-compare` shows the change)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
