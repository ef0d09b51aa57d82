"""The alert evaluator on the real broker: windows in, exactly one raise and one resolve out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from click.testing import CliRunner

from agents.alerts import AlertKind, AlertRule, AlertService, AlertSettings, read_alert_log
from infra.cli import main
from streams.codec import Codec
from streams.events.monitoring import AlertRaised, AlertResolved, MetricsWindow
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import read_all
from tests.integration.webhooks._outbound import admin_only, delivery_settings, running_service
from tests.integration.webhooks._receiver import receiver

pytestmark = pytest.mark.integration

RULE = AlertRule(
    name="HighErrorRate",
    kind=AlertKind.ERROR_RATE,
    raise_at=0.10,
    resolve_at=0.05,
    for_s=120,
    min_calls=10,
)
HOVERING = [
    0.02,
    0.11,
    0.09,
    0.12,
    0.11,
    0.13,
    0.10,
    0.08,
    0.12,
    0.09,
    0.11,
    0.06,
    0.12,
    0.03,
    0.04,
]


def windows(service: str = "search") -> list[MetricsWindow]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    out = []
    for minute, rate in enumerate(HOVERING):
        failures = round(rate * 200)
        out.append(
            MetricsWindow(
                service=service,
                window_start=start + timedelta(minutes=minute),
                window_end=start + timedelta(minutes=minute + 1),
                calls=200,
                successes=200 - failures,
                failures=failures,
                throughput_per_second=200 / 60,
                error_rate=failures / 200,
            )
        )
    return out


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def evaluator(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, lookback_s: float = 3 * 3600
) -> AsyncIterator[AlertService]:
    # one record per window here: a window is evaluated as soon as the next one arrives
    settings = AlertSettings(rules=(RULE,), lookback_s=lookback_s, settle_s=0)
    service = AlertService(kafka, codec, catalogue, settings)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
    assert service.failure is None, service.failure


async def _alerts(kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> list[object]:
    rows = await read_all(kafka, codec, catalogue.name("monitoring.alerts"))
    return [event for _, event, _ in rows]


async def test_hovering_value_raises_and_resolves_once_and_restarts_change_nothing(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    produced = windows()
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many(produced)
        async with evaluator(kafka_settings, codec, catalogue) as first:
            await _until(lambda: first.applied["monitoring.metrics"] == len(produced), "windows")
            assert first.written == 2
        events = await _alerts(kafka_settings, codec, catalogue)
        assert [type(e) for e in events] == [AlertRaised, AlertResolved]
        raised, resolved = events
        assert isinstance(raised, AlertRaised)
        assert isinstance(resolved, AlertResolved)
        assert raised.alert_id == resolved.alert_id
        assert raised.service == "search"
        assert raised.rule == "HighErrorRate"

        # a restart re-evaluates the same windows: everything it derives is already in the log
        async with evaluator(kafka_settings, codec, catalogue) as second:
            await _until(lambda: second.applied["monitoring.metrics"] == len(produced), "replay")
            # the same windows written again (a replay upstream) are duplicates too
            await publisher.publish_many(produced)
            await _until(lambda: second.applied["monitoring.metrics"] == 2 * len(produced), "dupes")
            assert second.written == 0
    assert await _alerts(kafka_settings, codec, catalogue) == events


async def test_alert_raised_mid_breach_survives_a_restart(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    produced = windows("llm")
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        async with evaluator(kafka_settings, codec, catalogue) as first:
            await publisher.publish_many(produced[:9])  # raised, still hovering
            await _until(lambda: first.applied["monitoring.metrics"] == 9, "first half")
            assert first.written == 1
        # restart from just after window 8: the raise is restored from the log, windows up to 8
        # only warm up, the rest are evaluated
        lookback_s = (datetime.now(UTC) - produced[8].window_end).total_seconds() - 5
        async with evaluator(kafka_settings, codec, catalogue, lookback_s) as second:
            assert [t.alert_id for t in second.book.firing().values()] == [
                r.raised.alert_id for r in second.log.firing()
            ]
            await publisher.publish_many(produced[9:])
            await _until(lambda: second.applied["monitoring.metrics"] == len(produced), "rest")
            assert second.written == 1
    raised, resolved = await _alerts(kafka_settings, codec, catalogue)
    assert isinstance(resolved, AlertResolved)
    assert isinstance(raised, AlertRaised)
    assert resolved.alert_id == raised.alert_id


async def test_alerts_reach_subscribed_webhook_endpoints_and_the_cli(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    codec: Codec,
    catalogue: Catalogue,
) -> None:
    produced = windows("maps")
    async with receiver() as bird, admin_only(kafka_settings, codec, catalogue) as out:
        _, secret = await out.admin.register(bird.url, event_types=["monitoring.alert_raised"])
        settings = delivery_settings()  # default source topics: monitoring.alerts among them
        async with (
            running_service(kafka_settings, codec, catalogue, settings, fanout=True),
            evaluator(kafka_settings, codec, catalogue) as alerts,
        ):
            await out.publisher.publish_many(produced)
            await _until(lambda: alerts.written == 2, "raise and resolve")
            [hit] = await bird.wait_for(1, timeout=30)
            await asyncio.sleep(0.5)  # the resolution is not subscribed: nothing else arrives
    assert len(bird.hits) == 1
    body = standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    assert body["type"] == "monitoring.alert_raised"
    assert body["data"]["service"] == "maps"

    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
    }
    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, main, ["alerts", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == []  # resolved: nothing firing
    everything = await asyncio.to_thread(
        runner.invoke, main, ["alerts", "list", "--all", "--json"], env=env
    )
    [row] = json.loads(everything.output)
    assert (row["rule"], row["service"], row["state"]) == ("HighErrorRate", "maps", "resolved")
    log = await read_alert_log(kafka_settings, codec, catalogue)
    assert [r.raised.alert_id for r in log.sorted()] == [row["alert_id"]]
