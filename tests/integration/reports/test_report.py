"""``backbone report`` on the real broker: its figures equal the metrics projection's windows,
which equal a recount from the raw events; the HTML report renders in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.projections import MetricsProjection
from infra.cli import main
from infra.testing.system import require_program
from streams import Publisher, Subscriber
from streams.codec import Codec
from streams.events.monitoring import MetricsWindow
from streams.projections import ProjectionRunner
from streams.rollup import rollup
from streams.settings import KafkaSettings, RegistrySettings
from streams.sketch import Sketch
from streams.topics import Catalogue
from tests.integration.projections._mixed import SERVICES, mixed_events, recount
from tests.integration.projections._support import running

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parents[2] / "artifacts"


async def _windows(kafka: KafkaSettings, codec: Codec, cat: Catalogue) -> list[MetricsWindow]:
    out: list[MetricsWindow] = []
    async with Subscriber(kafka, codec, cat, ["monitoring.metrics"], None, stop_at_end=True) as sub:
        async for received in sub:
            assert isinstance(received.event, MetricsWindow)
            out.append(received.event)
    return out


async def test_report_equals_the_projection_and_a_recount_and_renders_offline(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
    tmp_path: Path,
) -> None:
    events = mixed_events(600)  # four minutes of traffic an hour ago, three services
    expected = recount(events)
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(events)
    projection = ProjectionRunner(
        kafka_settings,
        codec,
        catalogue,
        MetricsProjection(window_s=60, grace_s=5),
        tmp_path / "store",
        group_id=f"{catalogue.prefix}metrics",
        flush_interval_s=1.0,
    )
    windows: list[MetricsWindow] = []
    async with running(projection):
        for _ in range(120):
            windows = await _windows(kafka_settings, codec, catalogue)
            if sum(w.calls for w in windows) == sum(expected.calls.values()):
                break
            await asyncio.sleep(1)
    figures = rollup(windows)
    assert {s: f.calls for s, f in figures.items()} == dict(expected.calls)  # projection = recount

    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
    }
    cli = CliRunner()
    answer = await asyncio.to_thread(
        cli.invoke, main, ["report", "--since", "2h", "--format", "json"], env=env
    )
    assert answer.exit_code == 0, answer.output
    report = json.loads(answer.output)
    totals = report["totals"]
    assert totals["requests"] == sum(expected.calls.values())
    assert totals["successes"] == sum(expected.successes.values())
    assert totals["failures"] == sum(expected.failures.values())
    assert totals["cost_usd"] == pytest.approx(sum(expected.cost.values()))
    merged = Sketch()
    for sketch in expected.sketches.values():
        merged.merge(sketch)
    assert totals["latency_p95_ms"] == pytest.approx(merged.quantile(0.95))
    assert totals["latency_mean_ms"] == pytest.approx(merged.mean)
    rows = {row["service"]: row for row in report["services"]}
    assert set(rows) == set(SERVICES)
    for service, f in figures.items():  # report = projection, service by service
        assert rows[service]["requests"] == f.calls == expected.calls[service]
        assert rows[service]["error_rate"] == pytest.approx(f.error_rate)
        assert rows[service]["latency_p95_ms"] == pytest.approx(f.latency_ms(0.95))
        assert rows[service]["cost_usd"] == pytest.approx(f.cost_usd)
    assert report["trends"]["requests"]["previous"] == 0
    assert sum(report["cost"]["by_model"].values()) == pytest.approx(totals["cost_usd"])

    one = await asyncio.to_thread(
        cli.invoke, main, ["report", "--since", "2h", "--service", "geo"], env=env
    )
    assert one.exit_code == 0, one.output
    [geo] = [line.split() for line in one.output.splitlines() if line.startswith("  geo ")]
    assert geo[1:3] == [str(expected.calls["geo"]), "req"]
    assert "  llm " not in one.output

    ARTIFACTS.mkdir(exist_ok=True)
    page, shot = ARTIFACTS / "report.html", ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    made = await asyncio.to_thread(
        cli.invoke,
        main,
        ["report", "--since", "2h", "--format", "html", "--output", str(page)],
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert page.read_text().count("<svg") == 3
    chromium = require_program("chromium")
    done = await asyncio.to_thread(
        subprocess.run,
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1000,1800",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # charts and tables, not a blank page
    print(f"\nreport screenshot: {shot}")
