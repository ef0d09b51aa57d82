"""The metrics projection on the real broker: windows equal a recount from the raw events,
duplicates and restarts change nothing, and a rebuild equals the live state field for field."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.projections import MetricsProjection
from streams import Publisher
from streams.codec import Codec
from streams.events import Event
from streams.events.monitoring import MetricsWindow
from streams.projections import SEEN_PREFIX, ProjectionRunner, SqliteStore, TaskView, store_path
from streams.projections._rebuild import rebuild
from streams.rollup import rollup
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.projections._mixed import SERVICES, mixed_events, recount
from tests.integration.projections._support import running, wait_for, windows

pytestmark = pytest.mark.integration


async def publish(kafka: KafkaSettings, codec: Codec, cat: Catalogue, events: list[Event]) -> None:
    async with Publisher(kafka, codec, cat) as publisher:
        await publisher.publish_many(events)


def runner(
    kafka: KafkaSettings, codec: Codec, cat: Catalogue, store: Path, flush_s: float
) -> ProjectionRunner:
    return ProjectionRunner(
        kafka,
        codec,
        cat,
        MetricsProjection(window_s=60, grace_s=5),
        store,
        group_id=f"{cat.prefix}metrics",
        flush_interval_s=flush_s,
    )


async def test_windows_equal_a_recount_and_duplicates_and_restarts_change_nothing(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    events = mixed_events(900)
    expected = recount(events)
    await publish(kafka_settings, codec, catalogue, events)
    live = runner(kafka_settings, codec, catalogue, tmp_path, flush_s=1.0)
    got: list[MetricsWindow] = []

    async def all_closed() -> bool:
        got[:] = await windows(kafka_settings, codec, catalogue)
        return sum(w.calls for w in got) == sum(expected.calls.values())

    async with running(live):
        for _ in range(120):
            if await all_closed():
                break
            await asyncio.sleep(1)
    figures = rollup(got)
    assert set(figures) == set(SERVICES)
    for s, f in figures.items():
        assert f.calls == expected.calls[s]
        assert f.successes == expected.successes[s]
        assert f.failures == expected.failures[s]
        assert f.failures_by_error_class == dict(expected.by_error[s])
        assert f.retries_scheduled == expected.retries[s]
        assert f.expired == expected.expired[s]
        assert f.health_checks == expected.checks[s]
        assert f.health_checks_up == expected.checks_up[s]
        assert f.cost_usd == pytest.approx(expected.cost[s])
        assert f.tokens_prompt + f.tokens_completion == expected.tokens[s]
        assert f.sketch.bins == expected.sketches[s].bins
        assert f.latency_ms(0.95) == expected.sketches[s].quantile(0.95)
    assert sum(f.successes_by_model.get("m-small", 0) for f in figures.values()) > 0

    # the same events again (same ids) and a restart: not one more window, not one more call
    await publish(kafka_settings, codec, catalogue, events[:200])
    again = runner(kafka_settings, codec, catalogue, tmp_path, flush_s=1.0)
    async with running(again):
        await wait_for(lambda: again.status.duplicates >= 200, what="the duplicates")
        await asyncio.sleep(3)  # a few idle flushes
    assert again.status.applied == 0
    after = await windows(kafka_settings, codec, catalogue)
    assert sorted(w.event_id for w in after) == sorted(w.event_id for w in got)


def state_of(path: Path) -> dict[tuple[int, str], object]:
    store = SqliteStore(path)
    try:
        return {(t, k): v for t, k, v in store.items() if not k.startswith(SEEN_PREFIX)}
    finally:
        store.close()


def rows_of(path: Path) -> list[object]:
    """Every state row and every block of remembered event ids."""
    store = SqliteStore(path)
    try:
        return [*store.rows(), *store.seen_rows()]
    finally:
        store.close()


def remembered(path: Path) -> set[tuple[int, int, bytes]]:
    """``(task, expiry bucket, id)`` of every remembered event id."""
    store = SqliteStore(path)
    try:
        return {(t, b, k) for t in store.tasks() for b, k in store.remembered_ids(t)}
    finally:
        store.close()


def rounded(value: Any) -> Any:
    """Floats to 12 significant digits: sums in another order differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def read_model(path: Path, emitted: list[MetricsWindow]) -> dict[tuple[str, object], object]:
    """Per service and minute, every figure: the closed windows merged with the open ones."""
    store = SqliteStore(path)
    projection = MetricsProjection(window_s=60, grace_s=5)
    try:
        everything = list(emitted)
        for task in store.tasks():
            everything += projection.open_windows(TaskView(store, task))
    finally:
        store.close()
    out: dict[tuple[str, object], object] = {}
    for start in sorted({w.window_start for w in everything}):
        minute = [w for w in everything if w.window_start == start]
        for service, figures in rollup(minute).items():
            body = figures.to_json()
            body.pop("windows")  # how many partial records made it up depends on the interleaving
            out[(service, start)] = rounded(body)
    return out


async def test_a_rebuild_equals_the_live_projection_field_for_field(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    events = mixed_events(700, seed=11, minutes=6)
    await publish(kafka_settings, codec, catalogue, events)
    live = runner(kafka_settings, codec, catalogue, tmp_path, flush_s=1e9)
    async with running(live):
        await wait_for(lambda: live.status.applied == len(events), what="the live projection")
    live_path = store_path(tmp_path, "metrics")
    live_model = read_model(live_path, await windows(kafka_settings, codec, catalogue))
    assert len(live_model) >= 3 * 6

    seen: list[float] = []
    emitted: list[MetricsWindow] = []
    report = await rebuild(
        kafka_settings,
        codec,
        catalogue,
        MetricsProjection(window_s=60, grace_s=5),
        tmp_path,
        swap=False,
        progress=lambda p: seen.append(p.rate),
        on_emit=lambda e: emitted.append(e),  # type: ignore[arg-type]
    )
    assert report.records == len(events)
    assert seen
    assert read_model(report.path, emitted) == live_model
    checkpoints = {k: v for k, v in state_of(report.path).items() if k[1] == "__checkpoint__"}
    assert checkpoints == {k: v for k, v in state_of(live_path).items() if k[1] == "__checkpoint__"}
    assert remembered(report.path) == remembered(live_path)  # the dedupe window's ids

    # rebuilt in two processes (tasks dealt between them): the same store, row for row
    one_process = rows_of(report.path)
    emitted_in_parts: list[MetricsWindow] = []
    in_parts = await rebuild(
        kafka_settings,
        codec,
        catalogue,
        MetricsProjection(window_s=60, grace_s=5),
        tmp_path,
        swap=False,
        workers=2,
        on_emit=lambda e: emitted_in_parts.append(e),  # type: ignore[arg-type]
    )
    assert (in_parts.records, in_parts.applied, in_parts.keys) == (
        report.records,
        report.applied,
        report.keys,
    )
    assert rows_of(in_parts.path) == one_process  # remembered event ids included
    assert read_model(in_parts.path, emitted_in_parts) == live_model

    # swapped in: the live file now holds a rebuilt state, and a runner resumes from it
    emitted.clear()
    swapped = await rebuild(
        kafka_settings,
        codec,
        catalogue,
        MetricsProjection(window_s=60, grace_s=5),
        tmp_path,
        on_emit=lambda e: emitted.append(e),  # type: ignore[arg-type]
    )
    assert swapped.path == live_path
    assert read_model(live_path, emitted) == live_model
    swapped_state = state_of(live_path)
    resumed = runner(kafka_settings, codec, catalogue, tmp_path, flush_s=1e9)
    async with running(resumed):
        await wait_for(lambda: resumed.status.tasks != () and resumed.status.state == "running")
        await asyncio.sleep(2)
    assert resumed.status.applied == 0
    assert resumed.status.restored == 0
    assert state_of(live_path) == swapped_state
