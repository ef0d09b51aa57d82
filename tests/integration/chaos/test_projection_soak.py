"""Soak of the projections service (issue 11, Performance: "steady-state RSS stays flat while keys
beyond the dedupe window are evicted"), ``make soak``.

``backbone projections run`` is started as its own process (so its resident memory is measured
alone) with a short dedupe window from its config file (``[projections] dedupe_window_s``,
``BACKBONE_SOAK_PROJECTION_WINDOW_S``, default 120 s), so remembered event ids are evicted many
times in the run. This process produces mixed call outcomes and health checks (fresh event ids,
``occurred_at`` = now) at ``BACKBONE_SOAK_PROJECTION_RATE`` events a second (default 300) for
``BACKBONE_SOAK_MINUTES`` (default 30).

Every 10 s the projection process's RSS, open descriptors and CPU seconds, the remembered ids and
blocks in its store (read from the SQLite file, read-only: WAL mode lets readers in while the
runner writes), its state rows, the store's bytes on disk (file and WAL) and the lag (as
``backbone projections status`` counts it) are a TSV line of ``BACKBONE_SOAK_PROJECTION_TRACE``
(default ``projection.tsv`` in the test's tmp dir); the process's log is next to it.

Oracle, once a warm-up of the window plus two expiry buckets is over (the first evictions are
done and the remembered ids are at their steady level):

- remembered ids never exceed the events produced with an event time in the last window plus two
  buckets (an id is kept at most one bucket past the window; one more for a batch in flight);
- neither RSS, the remembered ids nor the store's bytes grow with time: the last third of the
  samples peaks within :data:`RSS_SLACK` / :data:`GROWTH` of the first third's peak, while the
  events applied grow several-fold; RSS at the end is within :data:`RSS_SLACK` of the first
  sample after the warm-up (the baseline), open descriptors within :data:`FD_SLACK`;
- once the load stops the lag returns to 0, the windows written to ``monitoring.metrics`` count
  every call produced (eviction dropped no event as a duplicate), and the process stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.projections import MetricsProjection
from infra.config import load_settings
from streams import Publisher
from streams.codec import Codec
from streams.events.calls import CallFailed, CallSucceeded
from streams.projections import lag, store_path
from streams.projections._seen import BUCKET_MS, ID_SIZE
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.chaos._kit import open_fds, rss_bytes, start_process, stop_process
from tests.integration.projections._mixed import mixed_events
from tests.integration.projections._support import windows

#: RSS the last third of the run may peak above the first third's peak, and the end above the
#: baseline (allocator noise, SQLite's page cache; measured: under 1 MiB in 30 minutes). A leak of
#: 100 bytes an event at 300 events/s passes it in under 5 minutes.
RSS_SLACK = 8 * 1024 * 1024
#: factor the remembered ids and the store's bytes may peak above the first third's peak
GROWTH = 1.25
FD_SLACK = 8
#: seconds between two samples, and between two batches of produced events
SAMPLE_S = 10.0
BATCH_S = 0.1

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    at_s: float
    load1: float
    produced: int
    cpu_s: float
    rss: int
    fds: int
    ids: int
    blocks: int
    rows: int
    store_bytes: int
    lag: int
    #: events produced with an event time in the last window plus two buckets
    recent: int

    HEADER = (
        "t_s\tload1\tproduced\tcpu_s\trss_mib\tfds\tremembered_ids\tblocks\tstate_rows"
        "\tstore_kib\tlag\tproduced_in_window\n"
    )

    def line(self) -> str:
        return (
            f"{self.at_s:.0f}\t{self.load1:.2f}\t{self.produced}\t{self.cpu_s:.1f}"
            f"\t{self.rss / 2**20:.1f}\t{self.fds}\t{self.ids}\t{self.blocks}\t{self.rows}"
            f"\t{self.store_bytes // 1024}\t{self.lag}\t{self.recent}\n"
        )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def store_figures(path: Path) -> tuple[int, int, int, int]:
    """Remembered ids, their blocks and the state rows of a live store (opened read-only, held
    for one read), and its bytes on disk (the file and its write-ahead log)."""
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    if not path.exists():
        return 0, 0, 0, size
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        blocks, held = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(ids)), 0) FROM seen"
        ).fetchone()
        (rows,) = db.execute("SELECT COUNT(*) FROM state").fetchone()
    return int(held) // ID_SIZE, int(blocks), int(rows), size


def append(path: Path, line: str, *, fresh: bool = False) -> None:
    with path.open("w" if fresh else "a") as sink:
        sink.write(line)


def peak(samples: list[Sample], field: str) -> int:
    return max(int(getattr(s, field)) for s in samples)


def thirds(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    n = max(1, len(samples) // 3)
    return samples[:n], samples[-n:]


@dataclass
class Produced:
    """What the load wrote: the count, the calls (provider attempts) and, per second of event
    time, how many events (to bound the remembered ids)."""

    events: int = 0
    calls: int = 0
    per_second: dict[int, int] | None = None

    def recent(self, since_s: float) -> int:
        return sum(n for at, n in (self.per_second or {}).items() if at >= since_s)


async def produce(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    rate: float,
    until: float,
    out: Produced,
    keep_s: int,
) -> None:
    """``rate`` mixed events a second, in batches every :data:`BATCH_S`, until ``until``
    (``out.per_second`` keeps the last ``keep_s`` seconds)."""
    out.per_second = {}
    began = time.monotonic()
    async with Publisher(kafka, codec, catalogue) as publisher:
        n = 0
        while time.monotonic() < until:
            n += 1
            due = int(rate * BATCH_S * n) - out.events
            now = datetime.now(UTC)
            batch = mixed_events(due, seed=n, at_time=now)
            await publisher.publish_many(batch)
            out.events += len(batch)
            out.calls += sum(isinstance(e, CallSucceeded | CallFailed) for e in batch)
            second = int(now.timestamp())
            if second not in out.per_second:
                for old in [s for s in out.per_second if s < second - keep_s]:
                    del out.per_second[old]
            out.per_second[second] = out.per_second.get(second, 0) + len(batch)
            await asyncio.sleep(max(0.0, began + n * BATCH_S - time.monotonic()))


@pytest.mark.soak
@pytest.mark.timeout(0)
async def test_projection_soak(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    minutes = float(os.environ.get("BACKBONE_SOAK_MINUTES", "30"))
    rate = float(os.environ.get("BACKBONE_SOAK_PROJECTION_RATE", "300"))
    window_s = float(os.environ.get("BACKBONE_SOAK_PROJECTION_WINDOW_S", "120"))
    warmup_s = window_s + 2 * BUCKET_MS / 1000
    assert minutes * 60 >= 2 * warmup_s, (
        f"BACKBONE_SOAK_MINUTES={minutes:g} is too short to see eviction at a window of "
        f"{window_s:g} s: run at least {2 * warmup_s / 60:g} minutes"
    )
    trace = Path(os.environ.get("BACKBONE_SOAK_PROJECTION_TRACE", tmp_path / "projection.tsv"))
    store_dir = tmp_path / "projections"
    config = tmp_path / "backbone.toml"
    config.write_text(f'[projections]\nstore_dir = "{store_dir}"\ndedupe_window_s = {window_s}\n')
    env = {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
        "BACKBONE_STATE_DIR": str(tmp_path),
        "BACKBONE_CONFIG": str(config),
    }
    child = load_settings(env)  # the process's own settings: its consumer group's name
    assert child.projections.dedupe_window_s == window_s
    projection = MetricsProjection()
    store = store_path(store_dir, projection.name)
    log = trace.with_suffix(".log")
    print(f"\nprojection soak trace: {trace}, log {log}")
    append(trace, Sample.HEADER, fresh=True)
    proc = await start_process(["projections", "run", "--log-level", "INFO"], env, log)
    produced = Produced()
    samples: list[Sample] = []
    began = time.monotonic()

    async def sample() -> Sample:
        ids, blocks, rows, size = store_figures(store)
        behind = sum(p.lag for p in await lag(child.kafka, catalogue, projection, store_dir))
        since = time.time() - window_s - 2 * BUCKET_MS / 1000
        found = Sample(
            time.monotonic() - began, os.getloadavg()[0], produced.events,
            cpu_seconds(proc.pid), rss_bytes(proc.pid), open_fds(proc.pid), ids, blocks, rows,
            size, behind, produced.recent(since),
        )  # fmt: skip
        append(trace, found.line())
        return found

    try:
        load = asyncio.create_task(
            produce(
                kafka_settings,
                codec,
                catalogue,
                rate,
                began + minutes * 60,
                produced,
                keep_s=int(warmup_s) + 60,
            )
        )
        while not load.done():
            await asyncio.sleep(SAMPLE_S)
            assert proc.returncode is None, f"the projection process exited: see {log}"
            found = await sample()
            if found.at_s >= warmup_s:
                samples.append(found)
        await load
        deadline = time.monotonic() + 180
        last = await sample()
        while last.lag and time.monotonic() < deadline:
            await asyncio.sleep(2)
            last = await sample()
        counted = 0
        deadline = time.monotonic() + 180  # the idle flush closes the last windows
        while time.monotonic() < deadline:
            counted = sum(w.calls for w in await windows(kafka_settings, codec, catalogue))
            if counted >= produced.calls:
                break
            await asyncio.sleep(5)
        after = await sample()
    finally:
        code = await stop_process(proc)
    first, latest = thirds(samples)
    applied_growth = latest[-1].produced / max(1, first[0].produced)
    cpu_per_k = (samples[-1].cpu_s - samples[0].cpu_s) / max(
        1, (samples[-1].produced - samples[0].produced) / 1000
    )
    print(
        f"\nprojection soak {minutes:g} min at {rate:g}/s, dedupe window {window_s:g} s: produced "
        f"{produced.events} events ({produced.calls} calls), {len(samples)} samples after a "
        f"{warmup_s:.0f} s warm-up (events {applied_growth:.1f}x from the first to the last); "
        f"peaks first/last third: RSS {peak(first, 'rss') / 2**20:.1f}/"
        f"{peak(latest, 'rss') / 2**20:.1f} MiB, remembered ids {peak(first, 'ids')}/"
        f"{peak(latest, 'ids')}, store {peak(first, 'store_bytes') // 1024}/"
        f"{peak(latest, 'store_bytes') // 1024} KiB, fds {peak(first, 'fds')}/{peak(latest, 'fds')}"
        f"; after: lag {last.lag}, RSS {after.rss / 2**20:.1f} MiB, fds {after.fds}; CPU "
        f"{cpu_per_k:.3f} s per 1000 events; calls in windows {counted} of {produced.calls}; "
        f"exit code {code}; load {os.getloadavg()}"
    )
    assert samples, "no sample after the warm-up"
    too_many = [s for s in samples if s.ids > s.recent]
    assert not too_many, f"ids remembered beyond the window: {too_many[:3]}"
    assert peak(latest, "rss") - peak(first, "rss") < RSS_SLACK, "RSS grew with time"
    assert after.rss - samples[0].rss < RSS_SLACK, "RSS did not stay at its baseline"
    assert peak(latest, "ids") <= GROWTH * peak(first, "ids"), "remembered ids grew with time"
    assert peak(latest, "store_bytes") <= GROWTH * peak(first, "store_bytes"), "the store grew"
    assert after.fds - samples[0].fds <= FD_SLACK, "open file descriptors grew"
    assert last.lag == 0, f"the projection's lag did not return to 0 ({last.lag})"
    assert counted == produced.calls, f"windows counted {counted} of {produced.calls} calls"
    assert code == 0, f"the projection process did not stop cleanly ({code}): see {log}"
