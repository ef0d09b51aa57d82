"""Rate limits, retry tiers, dead letters, deadlines, priorities and idempotency on the real broker."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents import _headers as hd
from agents.lanes import Lane
from agents.settings import WorkerSettings
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallDeadLettered, Priority
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import (
    TopicReader,
    publish,
    request,
    running_worker,
    terminal,
    worker_settings,
)

pytestmark = pytest.mark.integration


def settings(
    catalogue: Catalogue, delays_s: tuple[float, ...] = (0.2, 0.4, 0.6), **kw: Any
) -> WorkerSettings:
    return worker_settings(catalogue, delays_s=delays_s, **kw)


async def test_rate_limit_is_never_exceeded(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc", rate=20, burst=1)
    reqs = [request("svc") for _ in range(41)]
    await publish(kafka_settings, codec, catalogue, reqs)
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 41)
    starts = sorted(t for ts in svc.attempts.values() for t in ts)
    # Never faster than the limit: after the burst (1), 40 more calls take 40/20 = 2 s at least.
    # Attempts are recorded when they run, which a stalled event loop delays (the first one
    # too, bunching the next ones after it): so no window of the recorded times is an oracle,
    # only the whole run, with 0.5 s for the first attempt's delay.
    assert starts[-1] - starts[0] >= 40 / 20 - 0.5, starts


async def test_retry_delays_follow_the_schedule_then_dead_letter(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    delays = (1.0, 1.5, 2.0)
    req = request("svc", payload=json.dumps({"fail": "retriable"}))
    await publish(kafka_settings, codec, catalogue, [req])
    async with (
        running_worker(
            kafka_settings,
            codec,
            catalogue,
            settings(catalogue, delays_s=delays),
            {"svc": svc},
        ),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 1)
    attempts = svc.attempts[req.call_id]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4
    # never early: an attempt is recorded before it fails, its retry is due `delay` after the
    # failure (how late a retry runs on a loaded machine is not an oracle)
    for gap, delay in zip(gaps, delays, strict=True):
        assert delay <= gap, (gaps, delays)
    scheduled = [
        (e.due_at - e.occurred_at).total_seconds() for e in results.of("call.retry_scheduled")
    ]
    assert scheduled == pytest.approx(delays, abs=0.05)
    [dead] = results.of("call.dead_lettered")
    assert isinstance(dead, CallDeadLettered)
    assert dead.failure.reason.value == "exhausted"
    assert len(results.of("call.failed")) == 4
    assert [e.tier for e in results.of("call.retry_scheduled")] == [1, 2, 3]


async def test_retry_after_pushes_the_due_time(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    req = request("svc", payload=json.dumps({"fail": "retriable", "times": 1, "retry_after": 1.5}))
    await publish(kafka_settings, codec, catalogue, [req])
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 1)
    first, second = svc.attempts[req.call_id]
    assert second - first >= 1.5  # never before the provider's Retry-After
    [scheduled] = results.of("call.retry_scheduled")
    assert (scheduled.due_at - scheduled.occurred_at).total_seconds() == pytest.approx(
        1.5, abs=0.05
    )
    assert results.of("call.succeeded")[0].attempt == 1


async def test_fatal_error_dead_letters_at_once_with_a_complete_envelope(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    req = request("svc", payload=json.dumps({"fail": "fatal"}))
    await publish(kafka_settings, codec, catalogue, [req])
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.dlt")) as dlt,
    ):
        await dlt.wait_for(lambda r: len(r.records) >= 1)
    assert len(svc.attempts[req.call_id]) == 1
    event, headers, _ = dlt.records[0]
    assert isinstance(event, CallDeadLettered)
    assert event.event_type == "call.dead_lettered"
    assert event.request.call_id == req.call_id
    assert event.request.idempotency_key == req.idempotency_key
    assert event.failure.reason.value == "fatal"
    assert event.failure.error_class == "RequestRejectedError"
    assert event.failure.original_topic == "calls.lane.normal"
    for name in (
        h.DLT_ORIGINAL_TOPIC,
        h.DLT_ORIGINAL_PARTITION,
        h.DLT_ORIGINAL_OFFSET,
        h.DLT_ORIGINAL_TIMESTAMP,
        h.DLT_ERROR_CLASS,
        h.DLT_REASON,
        hd.DLT_MESSAGE,
        hd.DLT_ATTEMPTS,
        hd.DLT_FIRST_FAILURE_AT,
        hd.DLT_LAST_FAILURE_AT,
        hd.DLT_SERVICE,
    ):
        assert headers.get(name), name
    assert headers[hd.DLT_SERVICE] == b"svc"
    assert headers[hd.DLT_ATTEMPTS] == b"1"
    assert int(headers[h.DLT_ORIGINAL_OFFSET]) == event.failure.original_offset


async def test_envelope_keeps_the_first_failure_across_tiers(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    req = request("svc", payload=json.dumps({"fail": "retriable"}))
    await publish(kafka_settings, codec, catalogue, [req])
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.dlt")) as dlt,
    ):
        await dlt.wait_for(lambda r: len(r.records) >= 1)
    event, headers, _ = dlt.records[0]
    assert isinstance(event, CallDeadLettered)
    first = hd.parse_time(headers[hd.DLT_FIRST_FAILURE_AT].decode())
    last = hd.parse_time(headers[hd.DLT_LAST_FAILURE_AT].decode())
    assert first is not None
    assert last is not None
    assert (last - first).total_seconds() >= 1.2 * 0.95  # 0.2 + 0.4 + 0.6 s of tiers
    assert headers[hd.DLT_ATTEMPTS] == b"4"
    assert event.failure.original_topic == "calls.lane.normal"  # not the last retry tier


async def test_deadline_expiry(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    past = request("svc", deadline=datetime.now(UTC) - timedelta(seconds=1))
    async with (
        running_worker(
            kafka_settings,
            codec,
            catalogue,
            settings(catalogue, delays_s=(1.0, 1.0, 5.0)),
            {"svc": svc},
        ),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        during_retries = request(
            "svc",
            payload=json.dumps({"fail": "retriable"}),
            deadline=datetime.now(UTC) + timedelta(seconds=2.5),
        )
        await publish(kafka_settings, codec, catalogue, [past, during_retries])
        await results.wait_for(lambda r: len(terminal(r)) >= 2)
    expired = {e.call_id for e in results.of("call.expired")}
    assert expired == {past.call_id, during_retries.call_id}
    assert past.call_id not in svc.attempts  # never called
    # attempts at about 0, 1 and 2 s; the next would be due at about 7 s, past the deadline (on a
    # loaded machine the third may already fall past it too)
    assert 1 <= len(svc.attempts[during_retries.call_id]) <= 3
    assert results.of("call.dead_lettered") == []


async def test_priority_high_first_low_not_starved(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc", latency_s=0.02)
    lows = [request("svc", priority=Priority.LOW) for _ in range(20)]
    highs = [request("svc", priority=Priority.HIGH) for _ in range(20)]
    await publish(kafka_settings, codec, catalogue, lows + highs)
    async with (
        running_worker(
            kafka_settings, codec, catalogue, settings(catalogue, max_in_flight=1), {"svc": svc}
        ) as worker,
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 40)
    granted = list(worker.dispatcher.granted)
    # Lanes start consuming at slightly different moments; from the first high grant on, both
    # lanes hold work and the picker serves about 6 high : 1 low.
    start = granted.index(Lane.HIGH)
    window = granted[start : start + 21]
    assert window.count(Lane.HIGH) >= 15, granted
    assert Lane.LOW in window, granted  # low is not starved behind high
    low_ids = {r.call_id for r in lows}
    assert {c for c in svc.order if c in low_ids} == low_ids
    assert granted.count(Lane.HIGH) == granted.count(Lane.LOW) == 20


async def test_duplicate_requests_execute_once(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc", latency_s=0.05)
    first = request("svc")
    dup = first.model_copy(
        update={"event_id": first.event_id.__class__(int=first.event_id.int + 1)}
    )
    sentinel = request("svc")  # same service, so the same lane partition: it comes last
    await publish(kafka_settings, codec, catalogue, [first, dup, first, sentinel])
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: sentinel.call_id in {e.call_id for e in terminal(r)})
    assert svc.successes[first.call_id] == 1
    assert [e.call_id for e in results.of("call.succeeded")].count(first.call_id) == 1


async def test_replayed_requests_do_not_call_unless_allowed(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = ScriptedService("svc")
    replayed = request("svc")
    allowed = request("svc")
    normal = request("svc")
    await publish(
        kafka_settings,
        codec,
        catalogue,
        [replayed],
        headers={h.REPLAYED_FROM: b"calls.requests/0/1"},
    )
    await publish(
        kafka_settings,
        codec,
        catalogue,
        [allowed],
        headers={h.REPLAYED_FROM: b"calls.requests/0/2", h.REPLAY_SIDE_EFFECTS: h.ALLOW},
    )
    await publish(kafka_settings, codec, catalogue, [normal])
    async with (
        running_worker(kafka_settings, codec, catalogue, settings(catalogue), {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 2)
    assert set(svc.attempts) == {allowed.call_id, normal.call_id}
