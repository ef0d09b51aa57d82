"""The benchmark harness: what a benchmark reports, how repeats are summarised, the results file.

A bench module plugs in by exposing ``rows(quick: bool) -> list[Row]``; ``python -m benchmarks``
calls each one, prints one table, writes the run as JSON and appends a dated line to
``benchmarks/results.jsonl``. A row carries our figure and the baseline measured in the same run
(each a :class:`Stat` of every repeat: median and spread), the parameters that make the figure
meaningful (records, record size, partitions, concurrency, repeats, warm-up), and optionally the
Kafka tool whose figure is its floor (``floor_key``; ``bench_floor`` measures them).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: every spawned process of a run imports the harness
    from streams.settings import KafkaSettings
    from streams.topics import Catalogue, TopicSpec

#: Higher is better for rates; lower for latencies (any unit starting with one of these).
_LOWER_IS_BETTER = ("ms", "s", "us", "MiB", "keys")

#: Floors ``bench_floor`` provides, by key; a row names one in ``floor_key``.
FLOOR_PRODUCE = "produce"
FLOOR_CONSUME = "consume"
FLOOR_E2E_P50 = "e2e_p50"
FLOOR_E2E_P99 = "e2e_p99"

RESULTS = Path(__file__).resolve().parent / "results.jsonl"
#: A loaded 2-core box can take minutes to start a JVM broker; a benchmark waits rather than fails.
BROKER_START_TIMEOUT_S = 600.0


def quick() -> bool:
    """``BENCH_QUICK=1`` (``make bench-quick``): smaller runs, the same code paths."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def scaled(full: int, small: int) -> int:
    """``full`` normally, ``small`` under ``make bench-quick``."""
    return small if quick() else full


@dataclass(frozen=True)
class Stat:
    """Every repeat of one figure; reported as the median and the spread (max - min)."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float] | float) -> Stat:
        values = (samples,) if isinstance(samples, int | float) else tuple(samples)
        if not values:
            raise ValueError("a Stat needs at least one sample")
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return max(self.samples) - min(self.samples)

    @property
    def relative_spread(self) -> float:
        """Spread as a fraction of the median (0.1 = the repeats lie within 10 % of it)."""
        return self.spread / self.median if self.median else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "spread": self.spread,
            "n": len(self.samples),
            "samples": list(self.samples),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stat:
        return cls.of(data.get("samples") or [data["median"]])


def lower_is_better(unit: str) -> bool:
    return unit.split()[0] in _LOWER_IS_BETTER


def speed_ratio(ours: float, reference: float, unit: str) -> float | None:
    """How fast we are relative to ``reference`` (1.0 = as fast; below 1 = slower), any unit."""
    if ours <= 0 or reference <= 0:
        return None
    return reference / ours if lower_is_better(unit) else ours / reference


@dataclass(frozen=True)
class Row:
    """One figure of the table."""

    name: str
    unit: str
    ours: Stat
    baseline: Stat | None = None
    baseline_name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    floor_key: str = ""  # the Kafka floor it is compared with (FLOOR_*), if any
    provides_floor: str = ""  # set on the Kafka tools' own rows
    target: str = ""  # the target, as text ("ratio >= 0.7", "p99 < 20 ms")
    module: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None:
            return None
        return speed_ratio(self.ours.median, self.baseline.median, self.unit)

    def floor_fraction(self, floors: dict[str, Stat]) -> float | None:
        floor = floors.get(self.floor_key) if self.floor_key else None
        if floor is None:
            return None
        return speed_ratio(self.ours.median, floor.median, self.unit)

    def to_json(self, floors: dict[str, Stat] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "module": self.module,
            "unit": self.unit,
            "ours": self.ours.to_json(),
            "baseline": self.baseline.to_json() if self.baseline else None,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "params": self.params,
            "floor_key": self.floor_key,
            "provides_floor": self.provides_floor,
            "target": self.target,
        }
        if floors is not None:
            data["floor_fraction"] = self.floor_fraction(floors)
        return data


def row_from_json(data: dict[str, Any]) -> Row:
    return Row(
        name=data["name"],
        unit=data["unit"],
        ours=Stat.from_json(data["ours"]),
        baseline=Stat.from_json(data["baseline"]) if data.get("baseline") else None,
        baseline_name=data.get("baseline_name", ""),
        params=data.get("params", {}),
        floor_key=data.get("floor_key", ""),
        provides_floor=data.get("provides_floor", ""),
        target=data.get("target", ""),
        module=data.get("module", ""),
    )


def floors_of(rows: Sequence[Row]) -> dict[str, Stat]:
    return {row.provides_floor: row.ours for row in rows if row.provides_floor}


# --- measuring --------------------------------------------------------------------------------


def repeat(run: Callable[[], float], repeats: int, warmup: int = 1) -> Stat:
    """Call ``run`` (which returns one figure) ``warmup`` times unrecorded, then ``repeats`` times."""
    for _ in range(warmup):
        run()
    return Stat.of([run() for _ in range(repeats)])


async def arepeat(run: Callable[[], Awaitable[float]], repeats: int, warmup: int = 1) -> Stat:
    for _ in range(warmup):
        await run()
    return Stat.of([await run() for _ in range(repeats)])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method; ``values`` need not be sorted."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """The broker every benchmark of a run shares: ``BACKBONE_KAFKA_BOOTSTRAP`` (set by
    ``python -m benchmarks``), or a broker of its own when a module runs alone."""
    bootstrap = os.environ.get("BACKBONE_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    from infra.kafka.broker import LocalBroker

    broker = LocalBroker()
    broker.start(timeout=BROKER_START_TIMEOUT_S)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def catalogue_topics(catalogue: Catalogue, *groups: str) -> list[tuple[str, TopicSpec]]:
    """``(real name, spec)`` of the catalogue's topics whose logical name is one of ``groups``
    or starts with one ending in a dot (``"calls."``: every ``calls.*`` topic)."""
    return [
        (catalogue.name(spec.name), spec)
        for spec in catalogue
        if any(spec.name == g or (g.endswith(".") and spec.name.startswith(g)) for g in groups)
    ]


async def create_catalogue_topics(kafka: KafkaSettings, catalogue: Catalogue, *groups: str) -> None:
    """Create (through ``streams.admin``, served before it returns) only the topics of
    ``catalogue`` the benchmark's code path uses (:func:`catalogue_topics`), not the whole
    catalogue: the broker's cost is per partition (about 20 ms each on a loaded 2-core box; the
    catalogue has 190), paid by every module that takes fresh topics."""
    from streams.admin import create_topics

    if not (topics := catalogue_topics(catalogue, *groups)):
        raise ValueError(f"no topic of the catalogue matches {groups}")
    await create_topics(kafka, topics, serving=True)


#: When this process imported the harness (the run's start under ``python -m benchmarks``).
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stderr with the run's elapsed time (long runs say what they are doing)."""
    print(f"  .. [{time.monotonic() - _STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)


# --- the table --------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_stat(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    if len(stat.samples) == 1:
        return _fmt(stat.median)
    return f"{_fmt(stat.median)} ±{stat.relative_spread * 50:.0f}%"


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def table(rows: Sequence[Row]) -> str:
    """The one table of a run: figure, baseline from the same run, ratio, fraction of the floor.

    ``±x%`` is half the spread (max - min) of the repeats relative to the median."""
    floors = floors_of(rows)
    header = ("benchmark", "unit", "ours (median)", "baseline (same run)", "ratio", "of floor", "n")
    lines = [header]
    for row in rows:
        baseline = _fmt_stat(row.baseline)
        if row.baseline is not None and row.baseline_name:
            baseline = f"{baseline} {row.baseline_name}"
        lines.append(
            (
                row.name,
                row.unit,
                _fmt_stat(row.ours),
                baseline,
                _fmt_ratio(row.ratio),
                _fmt_ratio(row.floor_fraction(floors)),
                str(len(row.ours.samples)),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def parameters(rows: Sequence[Row]) -> str:
    """What each figure was measured on: records, sizes, partitions, concurrency, repeats."""
    out = []
    for row in rows:
        text = ", ".join(f"{key}={value}" for key, value in row.params.items())
        target = f"; target {row.target}" if row.target else ""
        out.append(f"  {row.name}: {text or '-'}{target}")
    return "\n".join(out)


_SETUP_KEYS = ("records", "record_bytes", "body_bytes", "partitions", "concurrency", "clients",
               "events_per_s", "rate_per_s", "repeats")  # fmt: skip


def _setup(row: Row) -> str:
    return ", ".join(f"{k} {row.params[k]}" for k in _SETUP_KEYS if k in row.params)


def markdown_table(rows: Sequence[Row]) -> str:
    floors = floors_of(rows)
    out = [
        "| benchmark | unit | ours (median) | baseline, same run | ratio | of Kafka floor | setup |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = _fmt_stat(row.baseline)
        if row.baseline is not None and row.baseline_name:
            baseline = f"{baseline} ({row.baseline_name})"
        out.append(
            f"| {row.name} | {row.unit} | {_fmt_stat(row.ours)} | {baseline} | "
            f"{_fmt_ratio(row.ratio)} | {_fmt_ratio(row.floor_fraction(floors))} | "
            f"{_setup(row)} |"
        )
    return "\n".join(out)


def module_times(seconds: dict[str, float], total: float) -> str:
    """Wall time per module, its share of the run, and what the run spent outside the modules
    (the shared broker's start, during which the modules are imported, and its stop)."""
    if not seconds:
        return "  (no module ran)"
    width = max(len(name) for name in seconds)
    out = [
        f"  {name:<{width}}  {took:6.0f} s  {took / total:4.0%}"
        if total
        else f"  {name:<{width}}  {took:6.0f} s"
        for name, took in seconds.items()
    ]
    outside = total - sum(seconds.values())
    out.append(f"  {'modules':<{width}}  {sum(seconds.values()):6.0f} s")
    out.append(
        f"  {'outside modules':<{width}}  {outside:6.0f} s  (broker start with the modules' imports, broker stop)"
    )
    out.append(f"  {'run':<{width}}  {total:6.0f} s")
    return "\n".join(out)


# --- results over time --------------------------------------------------------------------------


def run_record(
    rows: Sequence[Row], *, quick_run: bool, failures: dict[str, str], meta: dict[str, Any]
) -> dict[str, Any]:
    floors = floors_of(rows)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick_run,
        **meta,
        "failures": failures,
        "rows": [row.to_json(floors) for row in rows],
    }


def append_result(record: dict[str, Any], path: Path = RESULTS) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")


def read_results(path: Path = RESULTS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(previous: dict[str, Any], latest: dict[str, Any]) -> str:
    """Each figure of ``latest`` against the same figure of ``previous`` (matched by name).

    ``change`` is in the figure's own direction: +10 % means 10 % better (faster, or lower latency)."""
    before = {row["name"]: row for row in previous["rows"]}
    header = ("benchmark", "unit", "previous", "latest", "change", "ratio then -> now")
    lines = [header]
    for row in latest["rows"]:
        old = before.get(row["name"])
        now = row["ours"]["median"]
        if old is None:
            lines.append((row["name"], row["unit"], "(new)", _fmt(now), "-", "-"))
            continue
        then = old["ours"]["median"]
        speed = speed_ratio(now, then, row["unit"])
        change = "-" if speed is None else f"{(speed - 1) * 100:+.0f}%"
        ratios = f"{_fmt_ratio(old.get('ratio'))} -> {_fmt_ratio(row.get('ratio'))}"
        lines.append((row["name"], row["unit"], _fmt(then), _fmt(now), change, ratios))
    gone = [name for name in before if name not in {r["name"] for r in latest["rows"]}]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        f"previous: {previous['date']} ({'quick' if previous.get('quick') else 'full'}, "
        f"load {previous.get('load', '?')})",
        f"latest:   {latest['date']} ({'quick' if latest.get('quick') else 'full'}, "
        f"load {latest.get('load', '?')})",
    ]
    if bool(previous.get("quick")) != bool(latest.get("quick")):
        out.append("note: one run is quick and the other full; sizes differ")
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if gone:
        out.append(f"not in the latest run: {', '.join(gone)}")
    return "\n".join(out)
