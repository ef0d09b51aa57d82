"""The fleet oracle's post-mortem names every record of a suspect call, with its coordinates,
and nothing of the other calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls._support import request
from tests.integration.chaos._postmortem import write_postmortem

pytestmark = pytest.mark.integration


async def test_the_postmortem_lists_the_suspect_calls_records(
    tmp_path: Path, kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    suspect, other = request("ext"), request("ext")
    async with Publisher(kafka_settings, codec, catalogue) as publisher:
        await publisher.publish_many([suspect, other])
    path = await write_postmortem(
        kafka_settings, codec, catalogue, [suspect.call_id], tmp_path / "postmortem.txt"
    )
    lines = path.read_text().splitlines()
    named = [line for line in lines if suspect.call_id in line]
    assert len(named) == 2, lines  # the heading, and its one record in calls.requests
    record = named[1]
    assert re.match(r"p\d+ o\d+ t=\S+ key=", record), record
    assert "call.requested" in record, record
    assert not any(other.call_id in line for line in lines), lines
    assert "== calls.requests" in lines[1], lines
