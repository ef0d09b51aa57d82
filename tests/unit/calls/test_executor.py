"""The executor's decisions, called as plain code: no Kafka, no Faust."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agents import _headers as hd
from agents.executor import CallExecutor, ServiceGuard
from agents.lanes import Lane
from agents.ledger import CallLedger
from agents.outcomes import Outcomes
from agents.outputs import Output, Source
from agents.retry import RetryPolicy
from agents.router import Routing, misrouted, route, routing_from_headers
from agents.settings import WorkerSettings
from connectors.base import CallInput, CallOutput
from connectors.resilience import BreakerPolicy, BreakerSnapshot, CircuitState
from connectors.settings import ServiceSettings
from streams import headers as h
from streams.events.calls import CallDeadLettered, CallRequested, CallStarted, Priority
from tests.integration.calls._scripted import ScriptedService

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SOURCE = Source("calls.lane.normal", 2, 40, 1_700_000_000_000)


def req(payload: dict[str, object] | None = None, **kw: object) -> CallRequested:
    call_id = uuid.uuid4().hex
    fields: dict[str, object] = {
        "call_id": call_id,
        "service": "svc",
        "operation": "op",
        "payload": json.dumps(payload or {}),
        "idempotency_key": call_id,
    }
    return CallRequested.model_validate({**fields, **kw})


def executor(svc: ScriptedService) -> CallExecutor:
    settings = WorkerSettings(retry=RetryPolicy(delays_s=(5, 30, 300)))
    return CallExecutor(settings, {"svc": svc}, CallLedger(), now=lambda: NOW)


def kinds(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.topic, o.event.event_type) for o in outputs]


async def test_success() -> None:
    svc = ScriptedService()
    out = await executor(svc).handle(req(), SOURCE)
    assert kinds(out) == [("calls.results", "call.succeeded")]


class NamingItsModel(ScriptedService):
    """A provider that names its model, with a response too large to keep whole."""

    async def execute(self, call: CallInput) -> CallOutput:
        body = '{"model": "m-1", "text": "' + "a" * (600 * 1024) + '"}'
        return CallOutput(status=200, body=body, model="m-1")


async def test_a_success_carries_the_model_its_provider_named_even_when_truncated() -> None:
    (out,) = await executor(NamingItsModel()).handle(req(), SOURCE)
    event = out.event
    assert event.response_truncated  # type: ignore[attr-defined]
    assert event.model == "m-1"  # type: ignore[attr-defined]


async def test_retriable_failure_goes_to_tier_one_with_its_due_time() -> None:
    out = await executor(ScriptedService()).handle(req({"fail": "retriable"}), SOURCE)
    assert kinds(out) == [  # outputs elsewhere first, then calls.results (see Attempt)
        ("calls.retry.1", "call.requested"),
        ("calls.results", "call.failed"),
        ("calls.results", "call.retry_scheduled"),
    ]
    retry = out[0]
    assert retry.key == b"svc"
    assert retry.headers[hd.DUE_AT] == hd.iso(NOW + timedelta(seconds=5))
    assert retry.event.attempt == 1  # type: ignore[attr-defined]
    assert retry.headers[h.DLT_ORIGINAL_OFFSET] == b"40"


async def test_last_tier_failure_is_exhausted() -> None:
    out = await executor(ScriptedService()).handle(req({"fail": "retriable"}, attempt=3), SOURCE)
    assert kinds(out) == [
        ("calls.dlt", "call.dead_lettered"),
        ("calls.results", "call.failed"),
        ("calls.results", "call.dead_lettered"),
    ]
    dead = out[-1].event
    assert isinstance(dead, CallDeadLettered)
    assert dead.failure.reason.value == "exhausted"
    assert dead.failure.attempts == 4


async def test_fatal_failure_dead_letters_at_once() -> None:
    out = await executor(ScriptedService()).handle(req({"fail": "fatal"}), SOURCE)
    assert [k for _, k in kinds(out)] == ["call.dead_lettered", "call.failed", "call.dead_lettered"]
    assert out[0].headers[h.DLT_REASON] == b"fatal"


async def test_expired_request_is_never_called() -> None:
    svc = ScriptedService()
    out = await executor(svc).handle(req(deadline=NOW - timedelta(seconds=1)), SOURCE)
    assert kinds(out) == [("calls.dlt", "call.dead_lettered"), ("calls.results", "call.expired")]
    assert svc.order == []


async def test_unknown_service_is_fatal() -> None:
    out = await executor(ScriptedService()).handle(req(service="nope"), SOURCE)
    assert out[1].event.error_class == "ConnectorNotFoundError"  # type: ignore[attr-defined]
    assert out[-1].event.event_type == "call.dead_lettered"


async def test_second_copy_of_a_succeeded_call_is_skipped() -> None:
    svc = ScriptedService()
    ex = executor(svc)
    r = req()
    await ex.handle(r, SOURCE)
    assert await ex.handle(r, SOURCE) == []
    assert len(svc.order) == 1


async def test_dead_lettered_call_runs_again_only_when_redriven() -> None:
    svc = ScriptedService()
    ex = executor(svc)
    r = req({"fail": "fatal", "times": 1})
    await ex.handle(r, SOURCE)
    assert await ex.handle(r, SOURCE) == []
    redriven = Source("calls.lane.normal", 2, 41, 0, {hd.REDRIVEN_FROM: b"calls.dlt/0/0"})
    assert kinds(await ex.handle(r, redriven)) == [("calls.results", "call.succeeded")]


async def test_replayed_records_do_not_call() -> None:
    svc = ScriptedService()
    replayed = Source("calls.lane.normal", 0, 1, 0, {h.REPLAYED_FROM: b"x/0/1"})
    assert await executor(svc).handle(req(), replayed) == []
    assert svc.order == []


def test_router_lanes_by_priority_keyed_by_service() -> None:
    r = Routing.of(req(priority=Priority.HIGH))
    [out] = route(r, Source("calls.requests", 0, 0, 0), now=NOW, allow_replayed=False)
    assert (out.topic, out.key) == ("calls.lane.high", b"svc")
    assert out.headers == {h.CALL_SERVICE: b"svc", h.CALL_PRIORITY: b"high"}
    replayed = Source("calls.requests", 0, 0, 0, {h.REPLAYED_FROM: b"x/0/1"})
    assert route(r, replayed, now=NOW, allow_replayed=False) == []


WIRE = b"\x00\x00\x00\x00\x07avro"  # magic byte, schema id 7, a body


def test_routing_comes_from_the_headers_when_the_producer_wrote_them() -> None:
    headers = {
        h.EVENT_TYPE: b"call.requested",
        h.CALL_SERVICE: b"svc",
        h.CALL_PRIORITY: b"low",
    }
    assert routing_from_headers(headers, WIRE) == Routing(b"svc", "low")
    assert Routing(b"svc", "low").lane is Lane.LOW
    assert Routing(b"svc", "urgent").lane is Lane.NORMAL  # as an unknown decoded priority
    # without them (a partner's own producer, an old record) the record is decoded instead
    for missing in (h.EVENT_TYPE, h.CALL_SERVICE, h.CALL_PRIORITY):
        partial = {k: v for k, v in headers.items() if k != missing}
        assert routing_from_headers(partial, WIRE) is None
    assert routing_from_headers({**headers, h.EVENT_TYPE: b"call.started"}, WIRE) is None
    assert routing_from_headers({**headers, h.CALL_SERVICE: b""}, WIRE) is None
    # a value that is no Avro record is decoded (and dead-lettered from its own topic)
    for value in (None, b"", b"{}", b"\x00\x00"):
        assert routing_from_headers(headers, value) is None


def test_a_lane_record_its_headers_misrouted_goes_where_its_request_says() -> None:
    r = req(priority=Priority.HIGH)
    lane = Source("calls.lane.normal", 0, 5, 0, {h.REPLAYED_FROM: b"x/0/1", "other": b"1"})
    assert misrouted(r, b"svc", Lane.HIGH, lane) == []
    [wrong_lane] = misrouted(r, b"svc", Lane.NORMAL, lane)
    [wrong_key] = misrouted(r, b"other-svc", Lane.HIGH, lane)
    for out in (wrong_lane, wrong_key):
        assert (out.topic, out.key, out.event_type) == ("calls.lane.high", b"svc", "call.requested")
        # what it carries goes with it (a replay mark keeps the lane from running it)
        assert out.headers[h.REPLAYED_FROM] == b"x/0/1"
        assert out.headers["other"] == b"1"
        assert out.headers[h.CALL_SERVICE] == b"svc"
        assert out.headers[h.CALL_PRIORITY] == b"high"


# --- the call ledger: a call is never executed twice --------------------------------------------


async def test_outcomes_carry_their_claim_and_the_claim_is_journaled_before_the_call() -> None:
    svc = ScriptedService()
    journal: list[tuple[str, int]] = []

    async def write(claim: CallStarted) -> None:
        journal.append((claim.claim_id, len(svc.order)))  # calls made when it was written

    ex = CallExecutor(WorkerSettings(), {"svc": svc}, CallLedger(), now=lambda: NOW, journal=write)
    attempt = await ex.attempt(req(), SOURCE)
    [(claim_id, calls_before)] = journal
    assert calls_before == 0
    assert len(svc.order) == 1
    [out] = attempt.outputs
    assert out.headers[h.CLAIM] == claim_id.encode()
    assert out.headers[h.CALL_END] == b"succeeded"
    assert attempt.end == "succeeded"


async def test_redelivered_record_whose_outputs_were_written_is_skipped() -> None:
    svc = ScriptedService()
    ex = executor(svc)
    r = req({"fail": "retriable", "times": 1})
    first = await ex.attempt(r, SOURCE)
    ex.settle(first)  # outputs durable (a retry was scheduled): the call has not ended
    again = await ex.attempt(r, SOURCE)  # the same lane record, read again after a rebalance
    assert again.outputs == []
    assert len(svc.order) == 1


async def test_record_whose_failure_was_not_acknowledged_is_dead_lettered_not_run_again() -> None:
    svc = ScriptedService()
    ex = executor(svc)
    r = req({"fail": "retriable"})
    ex.settle(await ex.attempt(r, SOURCE), written=False)
    out = (await ex.attempt(r, SOURCE)).outputs
    assert len(svc.order) == 1, "the service must not be called twice"
    assert out[1].event.error_class == "OutcomeUnknownError"  # type: ignore[attr-defined]
    assert kinds(out)[-1] == ("calls.results", "call.dead_lettered")


async def test_a_success_kafka_did_not_acknowledge_is_written_again_not_judged_unknown() -> None:
    """Its first write may yet become durable (a leader that appended it commits it once its
    followers return): judged unknown, the call would end twice, succeeded and dead-lettered.
    The same events are written again instead, with their event ids; never a second call."""
    svc = ScriptedService()
    ex = executor(svc)
    r = req()
    first = await ex.attempt(r, SOURCE)
    ex.settle(first, written=False)
    again = await ex.attempt(r, SOURCE)
    assert len(svc.order) == 1, "the service must not be called twice"
    assert kinds(again.outputs) == [("calls.results", "call.succeeded")]
    assert [o.event.event_id for o in again.outputs] == [o.event.event_id for o in first.outputs]
    assert again.claim_id != first.claim_id  # the new claim settles it
    ex.settle(again)
    assert (await ex.attempt(r, SOURCE)).outputs == []  # settled: read again, skipped
    # another record with the same key (not this one read again) is still judged unknown
    other = await ex.attempt(r, Source(SOURCE.topic, SOURCE.partition, 41, SOURCE.timestamp_ms))
    assert other.outputs == []  # succeeded: skipped


async def test_service_that_dedupes_by_key_is_called_again_with_the_same_key() -> None:
    svc = ScriptedService()
    settings = WorkerSettings(
        services=(ServiceSettings(name="svc", kind="x", dedupes_by_key=True),)
    )
    ex = CallExecutor(settings, {"svc": svc}, CallLedger(), now=lambda: NOW)
    r = req({"fail": "retriable"})
    ex.settle(await ex.attempt(r, SOURCE), written=False)
    again = (await ex.attempt(r, SOURCE)).outputs
    assert kinds(again)[0] == ("calls.retry.1", "call.requested")
    assert len(svc.order) == 2


async def test_a_restarted_worker_reads_an_open_claim_from_the_topics() -> None:
    """What a fresh worker rebuilds from calls.claims + calls.results after a kill -9."""
    r = req()
    claim = CallStarted(
        call_id=r.call_id,
        service="svc",
        attempt=0,
        idempotency_key=r.idempotency_key,
        claim_id="c1",
        lane_topic=SOURCE.topic,
        lane_partition=SOURCE.partition,
        lane_offset=SOURCE.offset,
        worker="dead",
    )
    ledger = CallLedger()
    ledger.apply_claim(claim)
    svc = ScriptedService()
    ex = CallExecutor(WorkerSettings(), {"svc": svc}, ledger, now=lambda: NOW)
    out = await ex.handle(r, SOURCE)
    assert svc.order == []
    assert out[-1].event.event_type == "call.dead_lettered"

    settled = CallLedger()  # same claim, but its outcome was written before the kill
    settled.apply_claim(claim)
    settled.apply_outcome({h.IDEMPOTENCY_KEY: r.idempotency_key.encode(), h.CLAIM: b"c1"})
    ex = CallExecutor(WorkerSettings(), {"svc": svc}, settled, now=lambda: NOW)
    assert await ex.handle(r, SOURCE) == []
    assert svc.order == []


async def test_the_last_results_record_carries_the_claim_and_is_written_last() -> None:
    attempt = await executor(ScriptedService()).attempt(req({"fail": "fatal"}), SOURCE)
    assert [o.topic for o in attempt.first] == ["calls.dlt"]
    assert [o.event.event_type for o in attempt.last] == ["call.failed", "call.dead_lettered"]
    assert h.CLAIM not in attempt.last[0].headers
    assert attempt.last[-1].headers[h.CLAIM] == attempt.claim_id.encode()  # type: ignore[union-attr]
    assert attempt.last[-1].headers[h.CALL_END] == b"gave-up"


async def test_a_call_is_claimed_only_once_it_holds_its_service_slot() -> None:
    """A call queued for one of the service's concurrency slots has no claim yet: a worker dying
    then leaves nothing 'outcome unknown' for a call that never reached the service."""
    gate = asyncio.Event()

    class Gated(ScriptedService):
        async def execute(self, call: CallInput) -> CallOutput:
            await gate.wait()
            return await super().execute(call)

    svc = Gated()
    journal: list[str] = []

    async def write(claim: CallStarted) -> None:
        journal.append(claim.call_id)

    settings = WorkerSettings(services=(ServiceSettings(name="svc", kind="x", max_concurrency=1),))
    ex = CallExecutor(settings, {"svc": svc}, CallLedger(), now=lambda: NOW, journal=write)
    first, second = req(), req()
    both = asyncio.gather(ex.attempt(first, SOURCE), ex.attempt(second, SOURCE))
    for _ in range(100):  # let both run as far as they can: one holds the slot, one waits
        await asyncio.sleep(0)
    assert journal == [first.call_id]
    gate.set()
    await both
    assert journal == [first.call_id, second.call_id]
    assert svc.order == [first.call_id, second.call_id]


async def test_a_call_refused_by_an_open_circuit_spends_its_attempts_and_ends() -> None:
    """Issue 12's retry storm: a refusal used not to spend an attempt, so a call parked behind a
    circuit that never closed was refused and parked again for ever. Follow one call's retry
    records through a circuit that stays open: it ends, dead-lettered, after the last tier."""
    svc = ScriptedService()
    ex = executor(svc)
    ex.guards["svc"].breaker.restore(BreakerSnapshot(CircuitState.OPEN, 0.0))  # open for 30 s
    record, source = req(), SOURCE
    handled: list[list[Output]] = []
    while len(handled) <= 10:
        out = await ex.handle(record, source)
        handled.append(out)
        retry = [o for o in out if o.topic.startswith("calls.retry.")]
        if not retry:
            break
        assert isinstance(retry[0].event, CallRequested)
        record = retry[0].event
        source = Source(retry[0].topic, 0, len(handled), 1_700_000_000_000, retry[0].headers)
    assert len(handled) == 4, f"{len(handled)} attempts, where 3 tiers allow 4"
    failed = [o.event for out in handled for o in out if o.event.event_type == "call.failed"]
    assert [(e.attempt, e.error_class) for e in failed] == [  # type: ignore[attr-defined]
        (n, "CircuitOpenError") for n in range(4)
    ]
    [dead] = [o.event for o in handled[-1] if o.topic == "calls.results"][1:]
    assert isinstance(dead, CallDeadLettered)
    assert (dead.failure.reason.value, dead.failure.attempts) == ("exhausted", 4)
    assert not svc.attempts, "a refused call reached the service"


async def test_refused_calls_are_spread_over_the_open_wait() -> None:
    """The herd parked by an open circuit comes back spread out, not all when it half-opens."""
    ex = executor(ScriptedService())
    ex.guards["svc"].breaker.restore(BreakerSnapshot(CircuitState.OPEN, 10.0))  # 20 s left of 30
    draws = iter([0.0, 0.5, 0.9])
    ex.outcomes = Outcomes(ex.settings, lambda: NOW, jitter=lambda: next(draws))
    dues = []
    for _ in range(3):
        [retry] = [o for o in await ex.handle(req(), SOURCE) if o.topic == "calls.retry.1"]
        dues.append(hd.parse_time(retry.headers[hd.DUE_AT].decode()))
    waits = [(d - NOW).total_seconds() for d in dues if d is not None]
    assert [round(w) for w in waits] == [20, 35, 47]


class CrashingOnce(ScriptedService):
    """Its first call raises what no connector should (a bug); later ones succeed."""

    async def execute(self, call: CallInput) -> CallOutput:
        if not self.order:
            self.order.append(call.call_id)
            raise RuntimeError("a connector bug")
        return await super().execute(call)


async def test_a_half_open_probe_that_crashes_frees_its_permit() -> None:
    """A probe whose connector raised (or that was cancelled) never reports to the breaker: its
    permit must come back, or a half-open circuit refuses every call for good."""
    svc = CrashingOnce()
    settings = WorkerSettings(
        retry=RetryPolicy(delays_s=(5, 30, 300)), breaker=BreakerPolicy(half_open_probes=1)
    )
    ex = CallExecutor(settings, {"svc": svc}, CallLedger(), now=lambda: NOW)
    ex.guards["svc"].breaker.restore(BreakerSnapshot(CircuitState.HALF_OPEN, 0.0))
    crashed = await ex.handle(req(), SOURCE)
    assert [e.error_class for e in (o.event for o in crashed) if e.event_type == "call.failed"] == [  # type: ignore[attr-defined]
        "AttemptCrashedError"
    ]
    probe = await ex.handle(req(), SOURCE)
    assert kinds(probe) == [("calls.results", "call.succeeded")], kinds(probe)


async def test_a_request_s_max_attempts_is_honoured() -> None:
    """``max_attempts`` ("attempts allowed in total") was accepted and then ignored."""
    out = await executor(ScriptedService()).handle(
        req({"fail": "retriable"}, attempt=1, max_attempts=2), SOURCE
    )
    [dead] = [o.event for o in out if o.topic == "calls.dlt"]
    assert isinstance(dead, CallDeadLettered)
    assert (dead.failure.reason.value, dead.failure.attempts) == ("exhausted", 2)


def test_a_long_wait_for_the_rate_limit_is_said_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = ServiceGuard(ScriptedService(rate=10, burst=10), WorkerSettings(), 4, lambda _: None)
    with caplog.at_level(logging.INFO, logger="agents.executor"):
        guard.waited(0.2)  # short: nothing said
        guard.waited(2.5)
        guard.waited(3.0)  # within the minute: not again
    said = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert said == [
        "service svc: calls wait 2.5 s for its rate limit (10/s, burst 10); "
        "the rest wait in Kafka as lane lag"
    ]
