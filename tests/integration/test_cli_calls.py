"""Issue 14 item 6 through the real CLI: ``calls show ID`` reads a call's state from the log;
``dlq list`` marks dead letters whose call later succeeded, ``--unresolved`` hides them, and
``dlq redrive`` counts only what it actually re-drove."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from streams import Publisher
from streams.codec import Codec
from streams.events import event_class
from streams.events.common import DeadLetterEnvelope, DeadLetterReason
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._cli import backbone, one_error_line

pytestmark = pytest.mark.integration


def _request(call_id: str) -> object:
    return event_class("call.requested").model_validate(
        {"call_id": call_id, "service": "search", "operation": "query", "payload": {"q": 1},
         "idempotency_key": call_id}
    )  # fmt: skip


def _dead_letter(call_id: str) -> object:
    now = datetime.now(UTC)
    envelope = DeadLetterEnvelope(
        reason=DeadLetterReason.EXHAUSTED, original_topic="calls.lane.normal",
        original_partition=0, original_offset=0, error_class="ProviderTimeoutError",
        message="timed out", attempts=3, first_failure_at=now, last_failure_at=now,
        service="search",
    )  # fmt: skip
    return event_class("call.dead_lettered").model_validate(
        {"call_id": call_id, "service": "search", "request": _request(call_id), "failure": envelope}
    )


def _success(call_id: str) -> object:
    return event_class("call.succeeded").model_validate(
        {"call_id": call_id, "service": "search", "operation": "query", "status": 200,
         "latency_ms": 12.5, "attempt": 0, "idempotency_key": call_id}
    )  # fmt: skip


async def test_calls_show_and_dlq_resolution(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    fixed, still_broken = f"fixed-{uuid.uuid4().hex[:8]}", f"broken-{uuid.uuid4().hex[:8]}"
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        for call_id in (fixed, still_broken):
            letter = _dead_letter(call_id)
            await publisher.publish(letter, topic="calls.dlt")  # type: ignore[arg-type]
            await publisher.publish(letter, topic="calls.results")  # type: ignore[arg-type]
        await publisher.publish(_success(fixed), topic="calls.results")  # type: ignore[arg-type]

    shown = await backbone(env, "calls", "show", fixed, "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["state"] == "succeeded"
    assert [h["event_type"] for h in state["history"]] == ["call.dead_lettered", "call.succeeded"]
    human = await backbone(env, "calls", "show", still_broken)
    assert human.stdout.splitlines()[0] == f"call {still_broken}: dead-lettered"

    missing = await backbone(env, "calls", "show", "no-such-call")
    assert missing.returncode == 1
    assert "no outcome of call 'no-such-call'" in one_error_line(missing)

    listed = json.loads((await backbone(env, "dlq", "list", "--json")).stdout)["dead_letters"]
    assert {r["call_id"]: r["resolved"] for r in listed} == {fixed: True, still_broken: False}
    open_only = json.loads((await backbone(env, "dlq", "list", "--unresolved", "--json")).stdout)
    assert [r["call_id"] for r in open_only["dead_letters"]] == [still_broken]

    redriven = await backbone(env, "dlq", "redrive")
    assert redriven.returncode == 0, redriven.stderr
    assert "re-drove 1 call(s); skipped 1 already resolved" in redriven.stdout
    requests = await backbone(env, "tail", "calls.requests", "-o", "beginning", "--no-follow",
                              "--json")  # fmt: skip
    ids = [json.loads(line)["event"]["call_id"] for line in requests.stdout.splitlines()]
    assert ids == [still_broken]  # exactly the unresolved one, once
