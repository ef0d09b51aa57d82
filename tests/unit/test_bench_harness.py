"""The benchmark harness's arithmetic: medians, spreads, ratios in both directions, floors, the
results file and the comparison of two runs, and the Kafka tools' output parsers."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks._harness import (
    FLOOR_E2E_P99,
    FLOOR_PRODUCE,
    Row,
    Stat,
    append_result,
    catalogue_topics,
    compare,
    create_catalogue_topics,
    module_times,
    percentile,
    read_results,
    repeat,
    row_from_json,
    run_record,
    speed_ratio,
    table,
)
from benchmarks._jobs import JobError, JobProcess
from benchmarks.bench_floor import parse_consumer, parse_latency, parse_producer
from benchmarks.bench_projections import BOUNDED, lag_verdict
from streams.settings import KafkaSettings
from streams.topics import Catalogue


def test_stat_median_and_spread() -> None:
    stat = Stat.of([10.0, 14.0, 11.0, 30.0])
    assert stat.median == 12.5
    assert stat.spread == 20.0
    assert stat.relative_spread == pytest.approx(1.6)
    assert Stat.of(3).samples == (3.0,)
    assert Stat.from_json(stat.to_json()) == stat
    row = Row("r", "ms", stat, Stat.of(2.0), "b", {"records": 3}, FLOOR_E2E_P99, target="t")
    assert row_from_json(row.to_json()) == row
    with pytest.raises(ValueError, match="at least one sample"):
        Stat.of([])


def test_repeat_runs_warmup_unrecorded() -> None:
    calls = iter([100.0, 1.0, 2.0, 3.0])
    stat = repeat(lambda: next(calls), repeats=3, warmup=1)
    assert stat.samples == (1.0, 2.0, 3.0)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile(list(reversed(values)), 0.01) == 1.0


def test_ratio_is_speed_for_rates_and_latencies() -> None:
    assert speed_ratio(50.0, 100.0, "records/s") == 0.5  # half the rate: half as fast
    assert speed_ratio(20.0, 10.0, "ms") == 0.5  # twice the latency: half as fast
    assert speed_ratio(0.0, 10.0, "ms") is None
    row = Row("x", "ms", Stat.of([4.0]), Stat.of([2.0]), floor_key=FLOOR_E2E_P99)
    assert row.ratio == 0.5
    assert row.floor_fraction({FLOOR_E2E_P99: Stat.of(1.0)}) == 0.25
    assert row.floor_fraction({}) is None
    assert Row("y", "records/s", Stat.of(1.0)).ratio is None


def test_table_names_baseline_ratio_and_floor() -> None:
    rows = [
        Row("floor", "records/s", Stat.of([1000.0]), provides_floor=FLOOR_PRODUCE),
        Row("ours", "records/s", Stat.of([250.0, 260.0, 240.0]), Stat.of([500.0]), "raw",
            floor_key=FLOOR_PRODUCE),
    ]  # fmt: skip
    text = table(rows)
    line = next(line for line in text.splitlines() if line.startswith("ours"))
    assert "250 ±4%" in line
    assert "500 raw" in line
    assert line.split()[-3:] == ["0.50", "0.25", "3"]


def _record(value: float, quick: bool = False) -> dict[str, object]:
    rows = [
        Row("publish", "records/s", Stat.of([value]), Stat.of([100.0])),
        Row("p99", "ms", Stat.of([value / 10]), Stat.of([1.0])),
    ]
    return run_record(rows, quick_run=quick, failures={}, meta={"load": "1.0"})


def test_compare_shows_change_in_the_figures_direction(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_result(_record(80.0), path)
    append_result(_record(100.0), path)
    runs = read_results(path)
    assert len(runs) == 2
    assert all("date" in run for run in runs)
    lines = compare(runs[0], runs[1]).splitlines()
    publish = next(line for line in lines if line.startswith("publish"))
    p99 = next(line for line in lines if line.startswith("p99"))
    assert "+25%" in publish  # 80 -> 100 records/s
    assert "-20%" in p99  # 8 -> 10 ms is 20 % slower
    assert "0.80 -> 1.00" in publish


def test_compare_notes_new_gone_and_mixed_sizes() -> None:
    before = _record(80.0)
    after = _record(80.0, quick=True)
    rows = after["rows"]
    assert isinstance(rows, list)
    after["rows"] = [rows[0], {**rows[0], "name": "brand new"}]
    text = compare(before, after)
    assert "(new)" in text
    assert "not in the latest run: p99" in text
    assert "quick" in text


def test_compare_command_needs_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.jsonl"
    assert runner.main(["--compare", "--results", str(path)]) == 0
    assert "compare needs 2" in capsys.readouterr().out
    append_result(_record(1.0), path)
    append_result(_record(2.0), path)
    assert runner.main(["--compare", "--results", str(path)]) == 0
    assert "+100%" in capsys.readouterr().out
    assert runner.main(["--markdown", "--results", str(path)]) == 0
    assert "| publish | records/s | 2.00 | 100 | 0.02 | - |" in capsys.readouterr().out


def test_committed_results_file_parses() -> None:
    for run in read_results():
        assert {"date", "rows", "quick", "load"} <= set(run)
        for row in run["rows"]:
            json.dumps(row)
            # Kafka's EndToEndLatency reports whole milliseconds: under 1 ms is 0
            assert row["ours"]["median"] > 0 or row["unit"] in ("fraction", "ms")
            assert row["ours"]["median"] >= 0


def test_floor_is_run_first() -> None:
    assert runner.modules()[0] == "bench_floor"


def test_kafka_tool_parsers() -> None:
    producer = (
        "49996 records sent, 9999.2 records/sec (2.44 MB/sec), 3.1 ms avg latency.\n"
        "100000 records sent, 12345.6 records/sec (3.01 MB/sec), 5.20 ms avg latency, 200.00 ms "
        "max latency, 3 ms 50th, 10 ms 95th, 40 ms 99th, 150 ms 99.9th.\n"
    )
    assert parse_producer(producer) == 12345.6
    warmed = (  # --warmup-records: the whole run, then the steady state (what the floor is)
        "Warmup first 5000 records. Steady state results will print after the complete test "
        "summary.\n25000 records sent, 9293.68 records/sec (2.27 MB/sec), 277.69 ms avg latency, "
        "1171.00 ms max latency, 251 ms 50th, 458 ms 95th, 485 ms 99th, 518 ms 99.9th.\n"
        "20000 steady state records sent, 15637.22 records/sec (3.82 MB/sec), 284.90 ms avg "
        "latency, 507.00 ms max latency, 252 ms 50th, 460 ms 95th, 485 ms 99th, 507 ms 99.9th.\n"
    )
    assert parse_producer(warmed) == 15637.22
    consumer = (
        "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
        "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
        "2026-11-30 08:00:00:000, 2026-11-30 08:00:05:000, 24.4, 4.9, 100000, 20000.0, 3000, "
        "2000, 12.2, 50000.0\n"
    )
    assert parse_consumer(consumer) == 50000.0
    latency = "0\t12.3\nAvg latency: 2.1000 ms\nPercentiles: 50th = 2, 99th = 9, 99.9th = 30\n"
    assert parse_latency(latency) == (2.0, 9.0)
    with pytest.raises(RuntimeError, match="no summary"):
        parse_producer("nothing")


def test_the_live_lag_verdict_needs_enough_samples_a_flat_second_half_and_a_drain() -> None:
    steady = [900, 1_200, 800, 1_000, 1_100, 700, 1_000, 1_150, 900, 1_000, 950, 1_100]
    assert lag_verdict(steady, drained=True) == (1_200, 1_150, BOUNDED)
    growing = [n * 500 for n in range(12)]
    assert lag_verdict(growing, drained=True)[2].startswith("GROWING")
    assert lag_verdict(steady, drained=False)[2].startswith("NOT DRAINED")
    assert lag_verdict(steady[:9], drained=True)[2].startswith("NO VERDICT (9 samples")
    # a second half up to ``tolerance`` above the first is still bounded, beyond it is not
    hovering = [0, 29, 157, 3, 0, 61, 0, 29, 163, 32, 0, 3]
    assert lag_verdict(hovering, drained=True)[2].startswith("GROWING")
    assert lag_verdict(hovering, drained=True, tolerance=146)[2] == BOUNDED
    assert lag_verdict(hovering, drained=True, tolerance=5)[2].startswith("GROWING")


def test_module_times_name_each_module_and_the_time_outside_them() -> None:
    text = module_times({"bench_floor": 20.0, "bench_sdk": 60.0}, 100.0)
    lines = text.splitlines()
    assert lines[0].split() == ["bench_floor", "20", "s", "20%"]
    assert lines[1].split() == ["bench_sdk", "60", "s", "60%"]
    assert lines[2].split() == ["modules", "80", "s"]
    assert lines[3].split()[:4] == ["outside", "modules", "20", "s"]
    assert lines[4].split() == ["run", "100", "s"]
    assert module_times({}, 5.0) == "  (no module ran)"


def test_catalogue_topics_takes_whole_groups_or_exact_names() -> None:
    catalogue = Catalogue(prefix="p.")
    names = [name for name, _ in catalogue_topics(catalogue, "calls.", "integration.health")]
    assert {"p.calls.requests", "p.calls.results", "p.calls.claims"} <= set(names)
    assert "p.integration.health" in names
    assert all(n.startswith("p.calls.") or n == "p.integration.health" for n in names)
    assert catalogue_topics(catalogue, "calls") == []  # no trailing dot: an exact name only
    with pytest.raises(ValueError, match="no topic"):
        asyncio.run(create_catalogue_topics(KafkaSettings(), catalogue, "nothing."))


def test_a_job_process_runs_every_job_in_one_process_and_reports_errors() -> None:
    async def jobs_of_one_process() -> None:
        async with JobProcess(os.getpid) as jobs:
            first, second = await jobs.run(), await jobs.run()
            assert first == second == jobs.pid != os.getpid()
            with pytest.raises(JobError, match="TypeError"):
                await jobs.run("an argument getpid does not take")
            assert await jobs.run() == first  # still serving after a failed job

    asyncio.run(jobs_of_one_process())


def test_preload_imports_modules_and_names_those_that_fail() -> None:
    assert runner.preload(["bench_cli", "bench_does_not_exist"]) == ["bench_does_not_exist"]


def test_the_runs_broker_keeps_its_data_in_memory_only_when_there_is_room(tmp_path: Path) -> None:
    fresh = runner.broker_data_dir(tmp_path, min_free=0)
    assert fresh is not None
    assert fresh.parent == tmp_path
    assert fresh.is_dir()
    assert runner.broker_data_dir(tmp_path, min_free=2**62) is None
    assert runner.broker_data_dir(tmp_path / "missing", min_free=0) is None
