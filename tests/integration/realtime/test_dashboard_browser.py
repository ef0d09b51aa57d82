"""The dashboard in a real browser (Debian's chromium through playwright): live events appear, and
after the gateway restarts the page resumes by itself without losing or repeating one."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from infra.testing.system import require_program
from streams.events import Event
from streams.events.calls import CallDeadLettered, CallFailed, CallRequested, CallSucceeded
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.events.health import CircuitState, CircuitStateChanged
from streams.events.monitoring import AlertRaised, Severity
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.realtime._kit import new_id, progress, running_gateway, token

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHANNELS = ["research:*", "integration:*", "alerts", "dead-letters"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(service: str, ok: bool, latency_ms: float) -> Event:
    call_id = uuid.uuid4().hex
    if ok:
        return CallSucceeded(
            call_id=call_id,
            service=service,
            operation="chat",
            status=200,
            latency_ms=latency_ms,
            attempt=1,
            idempotency_key=call_id,
            cost_usd=0.002,
        )
    return CallFailed(
        call_id=call_id,
        service=service,
        operation="chat",
        error_class="ProviderTimeoutError",
        message="timed out",
        retriable=True,
        attempt=1,
        idempotency_key=call_id,
        latency_ms=latency_ms,
    )


def _dead_letter(service: str) -> CallDeadLettered:
    call_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    request = CallRequested(
        call_id=call_id, service=service, operation="chat", payload="{}", idempotency_key=call_id
    )
    return CallDeadLettered(
        call_id=call_id,
        service=service,
        request=request,
        failure=DeadLetterEnvelope(
            reason=DeadLetterReason.EXHAUSTED,
            original_topic="calls.lane.normal",
            original_partition=0,
            original_offset=1,
            error_class="ProviderTimeoutError",
            message="timed out",
            attempts=4,
            first_failure_at=now,
            last_failure_at=now,
            service=service,
        ),
    )


def _alert(service: str) -> AlertRaised:
    return AlertRaised(
        alert_id=new_id("alert"),
        rule="error-rate",
        severity=Severity.CRITICAL,
        service=service,
        summary=f"{service} error rate above 20 %",
    )


async def _text(page: Page, selector: str) -> str:
    await page.wait_for_selector(selector, timeout=60_000)
    return await page.inner_text(selector)


async def _stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate(
        "() => { const s = window.backboneDashboard.stats;"
        " return {received: s.received, duplicates: s.duplicates, resyncs: s.resyncs,"
        " connects: s.connects, seen: [...s.seen]}; }"
    )
    return stats


async def _until_seen(page: Page, events: list[Event]) -> dict[str, Any]:
    wanted = {str(e.event_id) for e in events}
    async with asyncio.timeout(90):
        while True:
            stats = await _stats(page)
            if wanted <= set(stats["seen"]):
                return stats
            await asyncio.sleep(0.2)


async def test_dashboard_shows_live_events_and_resumes_after_a_gateway_restart(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    publisher: Publisher,
) -> None:
    chromium = require_program("chromium")
    service, run = new_id("svc"), new_id("run")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/#token={token(CHANNELS)}"
    first = [
        *[_call(service, True, latency) for latency in (120, 180, 240, 300)],
        _call(service, False, 900),
        progress(run, 1).model_copy(update={"percent": 40.0}),
        _alert(service),
        CircuitStateChanged(
            service=service, previous=CircuitState.CLOSED, current=CircuitState.OPEN
        ),
    ]
    dead = _dead_letter(service)
    offline = [
        progress(run, 2).model_copy(update={"percent": 80.0}),
        _alert(service),
        *[_call(service, True, 150) for _ in range(3)],
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            async with running_gateway(kafka_settings, schema_registry, catalogue, port=port) as gw:
                await page.goto(url)
                await page.wait_for_selector("#status[data-state=live]", timeout=60_000)
                for event in first:
                    await publisher.publish(event)
                await publisher.publish(dead, topic="calls.dlt")
                await _until_seen(page, [*first, dead])
                assert "40 %" in await _text(page, f"tr[data-run='{run}'] .percent")
                row = await _text(page, f"tr[data-service='{service}']")
                assert "open" in row  # the circuit state
                assert "20.0 %" in row  # error rate: 1 call of 5 failed
                assert first[6].alert_id in await page.inner_html("#alerts")  # type: ignore[attr-defined]
                dead_row = f"tr[data-dead='service {service}']"
                assert await _text(page, f"{dead_row} td.num") == "1"
                command = await _text(page, f"{dead_row} code")
                assert command == f"backbone dlq redrive --service {service}"
                stopping = asyncio.create_task(gw.stop())
            await stopping
            await page.wait_for_selector("#status[data-state=reconnecting]", timeout=60_000)
            for event in offline:  # while no gateway runs
                await publisher.publish(event)
            async with running_gateway(kafka_settings, schema_registry, catalogue, port=port):
                await page.wait_for_selector("#status[data-state=live]", timeout=90_000)
                stats = await _until_seen(page, offline)
                assert "80 %" in await _text(page, f"tr[data-run='{run}'] .percent")
                await page.wait_for_selector(f"tr[data-alert='{offline[1].alert_id}']")  # type: ignore[attr-defined]
                await asyncio.sleep(1)  # let a late duplicate show up, if there were one
                stats = await _stats(page)
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "dashboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"\ndashboard screenshot: {shot}")
            total = len(first) + 1 + len(offline)
            assert stats["duplicates"] == 0
            assert stats["resyncs"] == 0
            assert stats["received"] == total, "every event exactly once, across the restart"
            assert stats["connects"] >= 2
        finally:
            await browser.close()
