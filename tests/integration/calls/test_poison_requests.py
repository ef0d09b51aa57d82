"""Records that reach the worker without the gateway's checks (issue 10 items 4 and 5): each call
ends in exactly one terminal event in ``calls.results`` with its real reason, never
``OutcomeUnknownError`` when no worker stopped, and a retry record due in the year 9999 is
dead-lettered instead of holding its partition while due retries behind it wait.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from connectors.base import CallInput, CallOutput
from connectors.http_json import HttpJsonConnector
from connectors.settings import ServiceSettings
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallDeadLettered, CallRequested
from streams.producer import Publisher
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

BIG = 1_500_000  # bytes of response body: over the producer's 1 MiB record limit


class BigAnswer(ScriptedService):
    """Answers every call with a JSON body of :data:`BIG` bytes."""

    async def execute(self, call: CallInput) -> CallOutput:
        await super().execute(call)
        return CallOutput(status=200, body=json.dumps({"text": "é" * (BIG // 2)}))


@pytest.fixture
async def http_service() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _one_outcome_each(results: TopicReader, ids: set[str]) -> dict[str, Any]:
    ended = terminal(results)
    by_id: dict[str, list[Any]] = {}
    for event in ended:
        by_id.setdefault(event.call_id, []).append(event)
    assert {k: len(v) for k, v in by_id.items() if k in ids} == dict.fromkeys(ids, 1)
    return {k: v[0] for k, v in by_id.items()}


async def test_each_bad_request_ends_once_with_its_real_reason(
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    http_service: tuple[str, list[web.Request]],
) -> None:
    url, seen = http_service
    svc = ScriptedService("svc")
    big = BigAnswer("big")
    http = HttpJsonConnector(ServiceSettings(name="http", kind="http", base_url=url))
    deep = request("svc", payload='{"a":' * 5_000 + "1" + "}" * 5_000)
    negative = request("svc", payload='{"fail": "retriable"}').model_copy(update={"attempt": -2})
    nowhere = request("svc").model_copy(update={"reply_to": "no.such.topic"})
    crlf = request("http", key="k\r\nX-Injected: 1")
    huge = request("big").model_copy(update={"reply_to": "calls.results"})
    fine = request("svc")
    calls = [deep, negative, nowhere, crlf, huge, fine]
    ids = {c.call_id for c in calls}
    await publish(kafka_settings, codec, catalogue, calls)
    settings = worker_settings(catalogue)
    async with (
        running_worker(
            kafka_settings, codec, catalogue, settings, {"svc": svc, "big": big, "http": http}
        ),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: {e.call_id for e in terminal(r)} >= ids, timeout=60)
        ended = _one_outcome_each(results, ids)

    def failure(call: CallRequested) -> tuple[str, str, str]:
        event = ended[call.call_id]
        assert event.event_type == "call.dead_lettered", event
        return event.failure.reason.value, event.failure.error_class, event.failure.message

    assert failure(deep)[:2] == ("fatal", "UnsendableRequestError")
    assert "nested too deep" in failure(deep)[2]
    assert failure(negative)[:2] == ("fatal", "UnsendableRequestError")
    assert "attempt must be 0 or more, not -2" in failure(negative)[2]
    assert failure(nowhere)[:2] == ("fatal", "UnsendableRequestError")
    assert "reply_to 'no.such.topic' is not a topic" in failure(nowhere)[2]
    assert failure(crlf)[:2] == ("fatal", "UnsendableRequestError")
    assert "request not built" in failure(crlf)[2]
    assert seen == []  # the header injection never left the worker
    # refused before the provider was called
    assert {deep.call_id, negative.call_id, nowhere.call_id}.isdisjoint(svc.attempts)
    # the provider answered once; the outcome is stored truncated, with the flag and full size
    assert len(big.attempts[huge.call_id]) == 1
    stored = ended[huge.call_id]
    assert stored.event_type == "call.succeeded"
    assert stored.response_truncated
    assert stored.response_bytes == len(json.dumps({"text": "é" * (BIG // 2)}).encode())
    assert 0 < len(stored.response.encode()) <= 512 * 1024
    assert ended[fine.call_id].event_type == "call.succeeded"
    assert not ended[fine.call_id].response_truncated
    unknown = [e for e in results.events if isinstance(e, CallDeadLettered)]
    assert all(e.failure.error_class != "OutcomeUnknownError" for e in unknown)


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_a_retry_due_in_9999_is_dead_lettered_and_retries_behind_it_run(
    runtime: str, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    poison, due = request("svc"), request("svc")
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        # same key (the service), so the same partition of calls.retry.1: the due one is behind
        for call, when in ((poison, "9999-01-01T00:00:00Z"), (due, "2020-01-01T00:00:00Z")):
            await publisher.publish(
                call.model_copy(update={"attempt": 1}),
                topic="calls.retry.1",
                key=b"svc",
                headers={"backbone-due-at": when.encode()},
            )
    svc = ScriptedService("svc")
    settings = worker_settings(catalogue, runtime=runtime)
    ids = {poison.call_id, due.call_id}
    async with (
        running_worker(kafka_settings, codec, catalogue, settings, {"svc": svc}),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
        TopicReader(kafka_settings, codec, catalogue.name("calls.dlt")) as dlt,
    ):
        await results.wait_for(lambda r: {e.call_id for e in terminal(r)} >= ids, timeout=90)
        await dlt.wait_for(lambda r: len(r.records) >= 1, timeout=30)
        ended = _one_outcome_each(results, ids)
    assert ended[due.call_id].event_type == "call.succeeded"
    dead = ended[poison.call_id]
    assert dead.event_type == "call.dead_lettered"
    assert dead.failure.error_class == "RetryDueTooLateError"
    assert "9999-01-01" in dead.failure.message
    assert poison.call_id not in svc.attempts
    [(letter, headers, _)] = dlt.records
    assert isinstance(letter, CallDeadLettered)
    assert letter.call_id == poison.call_id
    assert headers[h.DLT_REASON] == b"fatal"
