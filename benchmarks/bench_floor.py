"""The floor: Kafka's own tools on the same broker, from the jars the project fetches.

- ``org.apache.kafka.tools.ProducerPerformance``: records/s of one Java producer at our producer
  settings (acks=all, idempotent, lz4, linger 5 ms), unthrottled; its first ``WARMUP_RECORDS``
  are its warm-up (``--warmup-records``: the JVM's JIT and the broker warm in the same run, and
  the figure is the steady-state line);
- ``org.apache.kafka.tools.ConsumerPerformance``: records/s of one Java consumer reading them back
  (``fetch.nMsg.sec``: the group join is excluded, as our tail figures exclude it);
- ``org.apache.kafka.tools.EndToEndLatency``: produce one record, wait until a consumer has it,
  repeat (acks=all): p50 and p99 in ms. Kafka's tool reports whole milliseconds.

Topics are created through ``streams.admin`` with the partition count of the catalogue's
``calls.requests`` (the topic most figures are about). No Python figure can beat these on this
machine; the table gives every figure as a fraction of its floor.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from pathlib import Path

from benchmarks._harness import (
    FLOOR_CONSUME,
    FLOOR_E2E_P50,
    FLOOR_E2E_P99,
    FLOOR_PRODUCE,
    Row,
    Stat,
    kafka_bootstrap,
    progress,
    scaled,
)
from infra.kafka.broker import ensure_distribution, find_java
from streams.admin import create_topics
from streams.settings import KafkaSettings
from streams.topics import Catalogue, TopicRole, TopicSpec

RECORDS = scaled(300_000, 20_000)
WARMUP_RECORDS = scaled(20_000, 5_000)
RECORD_SIZE = 256  # bytes; an encoded CallRequested of the benchmarks is about this size
LATENCY_RECORDS = scaled(5_000, 300)
REPEATS = scaled(3, 1)
PRODUCER_PROPS = ("acks=all", "enable.idempotence=true", "compression.type=lz4", "linger.ms=5")


def _tool(libs: Path, main: str, *args: str, timeout: float = 600) -> str:
    cmd = [
        find_java(), "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        "-Dlog4j2.level=warn", "-cp", f"{libs}/*", f"org.apache.kafka.tools.{main}", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{main} exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"
        )
    return done.stdout


def parse_producer(out: str) -> float:
    """records/s from ProducerPerformance's summary line (the last one with "records sent": with
    ``--warmup-records``, the steady-state line printed after the whole run's)."""
    lines = [line for line in out.splitlines() if "records sent" in line]
    match = re.search(r"([\d.]+) records/sec", lines[-1]) if lines else None
    if match is None:
        raise RuntimeError(f"no summary in ProducerPerformance output: {out[-500:]}")
    return float(match.group(1))


def parse_consumer(out: str) -> float:
    """``fetch.nMsg.sec`` from ConsumerPerformance's CSV (header line, then one value line)."""
    lines = [line for line in out.splitlines() if line.strip()]
    for n, line in enumerate(lines[:-1]):
        if "fetch.nMsg.sec" in line:
            header = [c.strip() for c in line.split(",")]
            values = [c.strip() for c in lines[n + 1].split(",")]
            return float(values[header.index("fetch.nMsg.sec")])
    raise RuntimeError(f"no stats in ConsumerPerformance output: {out[-500:]}")


def parse_latency(out: str) -> tuple[float, float]:
    """(p50, p99) in ms from EndToEndLatency's "Percentiles: 50th = a, 99th = b, ..." line."""
    match = re.search(r"50th = ([\d.]+), 99th = ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no percentiles in EndToEndLatency output: {out[-500:]}")
    return float(match.group(1)), float(match.group(2))


async def _topics(kafka: KafkaSettings) -> tuple[str, str, int]:
    partitions = Catalogue().spec("calls.requests").partitions
    tag = uuid.uuid4().hex[:6]
    perf, latency = f"bench-floor-{tag}.perf", f"bench-floor-{tag}.latency"
    await create_topics(
        kafka,
        [
            (perf, TopicSpec(perf, TopicRole.FACT, "none", (), "floor", partitions)),
            (latency, TopicSpec(latency, TopicRole.FACT, "none", (), "floor", 1)),
        ],
        serving=True,
    )
    return perf, latency, partitions


def rows() -> list[Row]:
    libs = ensure_distribution()
    with kafka_bootstrap() as bootstrap:
        perf, latency, partitions = asyncio.run(_topics(KafkaSettings(bootstrap=bootstrap)))
        produce, consume, p50, p99 = [], [], [], []
        for n in range(REPEATS):
            progress(f"floor {n + 1}/{REPEATS}: ProducerPerformance, {RECORDS:,} records")
            produce.append(
                parse_producer(
                    _tool(libs, "ProducerPerformance", "--topic", perf, "--num-records",
                          str(WARMUP_RECORDS + RECORDS), "--warmup-records", str(WARMUP_RECORDS),
                          "--record-size", str(RECORD_SIZE), "--throughput", "-1",
                          "--bootstrap-server", bootstrap, "--command-property", *PRODUCER_PROPS)
                )
            )  # fmt: skip
            progress(f"floor {n + 1}/{REPEATS}: ConsumerPerformance")
            consume.append(
                parse_consumer(
                    _tool(libs, "ConsumerPerformance", "--topic", perf, "--num-records",
                          str(RECORDS), "--bootstrap-server", bootstrap, "--group",
                          f"floor-{uuid.uuid4().hex[:6]}", "--timeout", "60000")
                )
            )  # fmt: skip
            progress(f"floor {n + 1}/{REPEATS}: EndToEndLatency, {LATENCY_RECORDS:,} round trips")
            a, b = parse_latency(
                _tool(libs, "EndToEndLatency", "--bootstrap-server", bootstrap, "--topic", latency,
                      "--num-records", str(LATENCY_RECORDS), "--producer-acks", "all",
                      "--record-size", str(RECORD_SIZE))
            )  # fmt: skip
            p50.append(a)
            p99.append(b)
    common = {"record_bytes": RECORD_SIZE, "repeats": REPEATS,
              "warmup": f"first {WARMUP_RECORDS:,} records of each producer run"}  # fmt: skip
    throughput = {**common, "records": RECORDS, "partitions": partitions, "concurrency": 1,
                  "producer": " ".join(PRODUCER_PROPS)}  # fmt: skip
    rtt = {**common, "records": LATENCY_RECORDS, "partitions": 1, "concurrency": 1, "acks": "all"}
    return [
        Row("floor: Kafka ProducerPerformance", "records/s", Stat.of(produce),
            params=throughput, provides_floor=FLOOR_PRODUCE),
        Row("floor: Kafka ConsumerPerformance", "records/s", Stat.of(consume),
            params=throughput, provides_floor=FLOOR_CONSUME),
        Row("floor: Kafka EndToEndLatency p50", "ms", Stat.of(p50), params=rtt,
            provides_floor=FLOOR_E2E_P50),
        Row("floor: Kafka EndToEndLatency p99", "ms", Stat.of(p99), params=rtt,
            provides_floor=FLOOR_E2E_P99),
    ]  # fmt: skip


def main() -> None:
    from benchmarks._harness import table

    print(table(rows()))


if __name__ == "__main__":
    main()
