from __future__ import annotations

import pytest

from agents.settings import WorkerSettings
from connectors import ServiceSettings
from streams.codec import Codec
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._support import TopicReader, publish, request, running_worker, terminal

pytestmark = pytest.mark.integration


def worker_settings(catalogue: Catalogue, **services: dict[str, str]) -> WorkerSettings:
    return WorkerSettings(
        group_id=f"{catalogue.prefix}calls",
        services=tuple(
            ServiceSettings(name=n, kind="simulated", options=o) for n, o in services.items()
        ),
    )


async def test_requests_become_successes(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    reqs = [request("sim") for _ in range(20)]
    await publish(kafka_settings, codec, catalogue, reqs)
    async with (
        running_worker(kafka_settings, codec, catalogue, worker_settings(catalogue, sim={})),
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        await results.wait_for(lambda r: len(terminal(r)) >= 20)
    succeeded = results.of("call.succeeded")
    assert sorted(e.call_id for e in succeeded) == sorted(r.call_id for r in reqs)
