"""A worker stopped gracefully while a call is in flight lets it finish (bounded by the drain
timeout) before it lets go of the lane: the call ends once, run once (both runtimes).

On the Faust runtime, ``app.stop()`` cancelled the lane actor mid-batch and ``take_events`` acked
the whole batch in its ``finally``, so its offsets were committed: the call in flight was cut off
and never read again (no outcome), or, read again, found open and dead-lettered as unknown.
"""

from __future__ import annotations

import asyncio

import pytest

from agents.worker import CallWorker
from connectors.base import CallInput, CallOutput
from streams.codec import Codec
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._scripted import ScriptedService
from tests.integration.calls._support import (
    TERMINAL,
    TopicReader,
    publish,
    request,
    worker_settings,
)

pytestmark = pytest.mark.integration


class HeldService(ScriptedService):
    """Holds the call ``held`` until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__("svc")
        self.held = ""
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self, call: CallInput) -> CallOutput:
        if call.call_id == self.held:
            self.attempts[call.call_id].append(0.0)
            self.started.set()
            await self.release.wait()
            self.attempts[call.call_id].pop()
        return await super().execute(call)


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
@pytest.mark.timeout(300)
async def test_a_graceful_stop_lets_the_call_in_flight_finish_once(
    runtime: str, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    svc = HeldService()
    settings = worker_settings(catalogue, runtime=runtime)
    first = CallWorker(kafka_settings, codec, catalogue, settings, connectors={"svc": svc})
    held, control = request("svc"), request("svc")  # one lane partition (keyed by service)
    svc.held = held.call_id
    async with TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as out:
        await first.start()
        try:
            await publish(kafka_settings, codec, catalogue, [held])
            await asyncio.wait_for(svc.started.wait(), 60)
        finally:
            # the call is in flight: stop the worker, and let the call end 2 s into the stop
            release = asyncio.get_running_loop().call_later(2.0, svc.release.set)
            await first.stop()
            release.cancel()
            svc.release.set()
        second = CallWorker(kafka_settings, codec, catalogue, settings, connectors={"svc": svc})
        await second.start()
        try:
            await publish(kafka_settings, codec, catalogue, [control])
            await out.wait_for(
                lambda r: any(
                    getattr(e, "call_id", None) == control.call_id and e.event_type in TERMINAL
                    for e in r.events
                ),
                timeout=120,
            )
            await asyncio.sleep(2)  # a second outcome of the held call would show up now
            await out.poll()
        finally:
            await second.stop()
    ends = [
        e.event_type
        for e in out.events
        if getattr(e, "call_id", None) == held.call_id and e.event_type in TERMINAL
    ]
    assert ends == ["call.succeeded"], f"the call in flight at the stop ended {ends}"
    assert len(svc.attempts[held.call_id]) == 1, "the call in flight was run again"
