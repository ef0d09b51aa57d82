"""Every call ends within the retry budget, however long its service keeps failing (issue 12).

A service that always fails trips its breaker; the calls behind it are refused by the open
circuit, and the few let through half-open fail again. A refusal spends an attempt like a failed
call does, so each call is retried at most ``len(delays_s)`` times and then dead-lettered: no call
cycles between the tiers and a re-opening circuit for ever (the storm of
``tests/integration/chaos/test_external_misbehaviour.py``, where calls were retried hundreds of
times each).
"""

from __future__ import annotations

from collections import Counter

import pytest

from agents.settings import WorkerSettings
from connectors.resilience import BreakerPolicy
from streams.codec import Codec
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

DELAYS_S = (0.2, 0.3, 0.4)
CALLS = 24


def settings(catalogue: Catalogue, runtime: str) -> WorkerSettings:
    """A breaker that opens after 4 calls at 50 % failures, waits 0.5 s, probes with 2 calls."""
    return worker_settings(
        catalogue,
        runtime=runtime,
        delays_s=DELAYS_S,
        breaker=BreakerPolicy(
            window_s=30, failure_rate=0.5, minimum_calls=4, open_wait_s=0.5, half_open_probes=2
        ),
    )


def retries_per_call(results: TopicReader) -> Counter[str]:
    return Counter(e.call_id for e in results.of("call.retry_scheduled"))


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_calls_to_a_service_that_never_recovers_end_within_their_tiers(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, runtime: str
) -> None:
    svc = ScriptedService("svc")
    svc.broken = True
    reqs = [request("svc") for _ in range(CALLS)]
    ids = {r.call_id for r in reqs}
    tiers = len(DELAYS_S)

    def settled_or_storming(reader: TopicReader) -> bool:
        """Every call ended, or one went past its budget already (no need to wait longer)."""
        ended = {e.call_id for e in terminal(reader)}
        return ids <= ended or max(retries_per_call(reader).values(), default=0) > tiers

    await publish(kafka_settings, codec, catalogue, reqs)
    async with (
        running_worker(
            kafka_settings, codec, catalogue, settings(catalogue, runtime), {"svc": svc}
        ),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(settled_or_storming, timeout=180)
    retries = retries_per_call(results)
    worst = retries.most_common(1)
    assert max(retries.values()) <= tiers, f"a call was retried more than {tiers} times: {worst}"
    ended = Counter(e.call_id for e in terminal(results))
    assert set(ended) == ids, "a call never ended"
    assert set(ended.values()) == {1}, "a call with more than one outcome"
    dead = results.of("call.dead_lettered")
    assert {e.failure.reason.value for e in dead} == {"exhausted"}
    refused = [e for e in results.of("call.failed") if e.error_class == "CircuitOpenError"]
    assert refused, "the circuit never refused a call: the test did not exercise the breaker"
    # a refusal is an attempt of the call (its number is spent) but never reaches the service
    for r in reqs:
        outcomes = sorted(e.attempt for e in results.of("call.failed") if e.call_id == r.call_id)
        assert outcomes == list(range(tiers + 1)), (r.call_id, outcomes)
    reached = sum(len(a) for a in svc.attempts.values())
    assert reached + len(refused) == CALLS * (tiers + 1)
