"""Issue 14 item 11: kcat and Kafka-tools habits, through the real CLI against the real broker.

``tail -o/-p/--until/-k/--raw``, key and headers in the human output, ``tail _schemas`` readable,
``groups list|describe`` with lag, ``topics describe`` with the cluster's live state.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from streams import Publisher, Subscriber
from streams.codec import Codec
from streams.events import Event
from streams.producer import Coordinates
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._cli import backbone
from tests.integration._events import call_requested

pytestmark = pytest.mark.integration


async def _publish(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> list[tuple[Event, Coordinates, bytes]]:
    """Six events under key ``alpha`` (one partition) and three under ``beta``."""
    sent = []
    async with Publisher(kafka, codec, catalogue) as publisher:
        for i, key in enumerate([b"alpha"] * 6 + [b"beta"] * 3):
            event = call_requested(i)
            sent.append((event, await publisher.publish(event, key=key), key))
    return sent


def _rows(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


async def test_tail_offsets_partitions_keys_until_and_raw(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    sent = await _publish(kafka_settings, codec, catalogue)
    alpha = [(e, c) for e, c, k in sent if k == b"alpha"]
    partition = alpha[0][1].partition
    base = ("tail", "calls.requests", "--no-follow", "--json")

    everything = await backbone(env, *base, "-o", "beginning")
    assert everything.returncode == 0, everything.stderr
    ids = [r["event"]["event_id"] for r in _rows(everything.stdout)]  # type: ignore[index]
    assert sorted(ids) == sorted(str(e.event_id) for e, _, _ in sent)  # each once

    in_partition = [c for _, c, _ in sent if c.partition == partition]
    last_two = await backbone(env, *base, "-o", "-2", "-p", str(partition))
    rows = _rows(last_two.stdout)
    assert [r["offset"] for r in rows] == [c.offset for c in in_partition][-2:]
    assert all(r["partition"] == partition for r in rows)

    from_offset = await backbone(env, *base, "-o", str(alpha[3][1].offset), "-p", str(partition))
    offsets = [r["offset"] for r in _rows(from_offset.stdout)]
    assert offsets[0] == alpha[3][1].offset
    assert len(offsets) == len(set(offsets))

    by_key = await backbone(env, *base, "-o", "beginning", "-k", "beta")
    assert {r["key"] for r in _rows(by_key.stdout)} == {"beta"}
    assert len(_rows(by_key.stdout)) == 3

    cut = alpha[2][1].timestamp_ms
    until = await backbone(
        env, *base, "-o", "beginning", "-p", str(partition), "--until", f"@{cut}"
    )
    expected = [c.offset for c in in_partition if c.timestamp_ms < cut]
    assert [r["offset"] for r in _rows(until.stdout)] == expected

    human = await backbone(env, "tail", "calls.requests", "--no-follow", "-o", "beginning",
                           "-k", "beta", "-c", "1")  # fmt: skip
    assert human.returncode == 0, human.stderr
    line = human.stdout.strip()
    assert "key=beta" in line
    assert "call.requested" in line
    assert len(human.stdout.splitlines()) == 1

    raw = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "infra.cli", "tail", "calls.requests", "--no-follow",
         "-o", "beginning", "-k", "beta", "-c", "1", "--raw"],
        env=env, capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    assert raw.returncode == 0
    assert raw.stdout[:1] == b"\x00"  # the Confluent wire format's magic byte, undecoded
    assert raw.stdout.endswith(b"\n")


async def test_bad_partition_and_bad_offset_are_usage_errors(env: dict[str, str]) -> None:
    done = await backbone(env, "tail", "calls.requests", "--no-follow", "-p", "99")
    assert done.returncode == 2
    assert "has no partition 99" in done.stderr
    bad = await backbone(env, "tail", "calls.requests", "-o", "middle")
    assert bad.returncode == 2
    assert "'middle' is not a position" in bad.stderr


async def test_tail_schemas_shows_the_registry_records_as_text(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    await _publish(kafka_settings, codec, catalogue)  # registers a schema
    schemas_topic = (await backbone(env, "topics", "list", "--json")).stdout
    assert "_schemas" in schemas_topic
    from streams.inspect import topic_names

    # the session registry's own topic (the test catalogue's `_schemas` is unused)
    registry_topic = next(
        t
        for t in await topic_names(kafka_settings)
        if t.startswith("registry-") and "_schemas" in t
    )
    done = await backbone(env, "tail", registry_topic, "-o", "beginning", "--no-follow")
    assert done.returncode == 0, done.stderr
    assert "(not an event" in done.stdout
    assert "schema" in done.stdout
    assert "undecodable" not in done.stderr


async def test_groups_list_describe_and_reset_show_lag(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    sent = await _publish(kafka_settings, codec, catalogue)
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with Subscriber(kafka_settings, codec, catalogue, ["calls.requests"], group) as sub:
        seen = 0
        async for received in sub:
            await sub.commit(received)
            seen += 1
            if seen == len(sent):
                break

    listed = await backbone(env, "groups", "list")
    assert group in listed.stdout.split()

    described = await backbone(env, "groups", "describe", group, "--json")
    assert described.returncode == 0, described.stderr
    state = json.loads(described.stdout)
    assert state["lag"] == 0
    assert state["members"] == 0  # the subscriber left

    plan = await backbone(env, "groups", "reset", group, "--topic", "calls.requests",
                          "--to", "beginning")  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert "MOVE" in plan.stdout
    assert "-6" in plan.stdout  # alpha's partition moves back by 6, shown as a negative move
    assert "plan only" in plan.stdout

    done = await backbone(env, "groups", "reset", group, "--topic", "calls.requests",
                          "--to", "beginning", "--execute")  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = json.loads((await backbone(env, "groups", "describe", group, "--json")).stdout)
    assert after["lag"] == len(sent)  # nothing lost, nothing counted twice


async def test_topics_describe_shows_live_cluster_state(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    sent = await _publish(kafka_settings, codec, catalogue)
    done = await backbone(env, "topics", "describe", "calls.requests", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    spec = catalogue.spec("calls.requests")
    assert len(data["partitions"]) == spec.partitions
    assert data["records"] == len(sent)
    assert all(p["leader"] >= 0 for p in data["partitions"])
    assert data["config_overrides"]["retention.ms"] == str(spec.retention_ms)
    # sizes on disk (DescribeLogDirs): every partition written to holds bytes
    written = [p for p in data["partitions"] if p["end_offset"] > p["start_offset"]]
    assert written
    assert all(p["size_bytes"] > 0 for p in written)
    assert data["size_bytes"] == sum(p["size_bytes"] for p in data["partitions"])
    listed = await backbone(env, "topics", "list", "--sizes", "--json")
    assert listed.returncode == 0, listed.stderr
    sizes = {row["name"]: row["size_bytes"] for row in json.loads(listed.stdout)}
    assert sizes["calls.requests"] == data["size_bytes"]
    assert sizes["calls.results"] == 0  # exists, empty

    human = await backbone(env, "topics", "describe", "calls.requests")
    assert "retention 30d" in human.stdout or "retention" in human.stdout
    assert "LEADER" in human.stdout
    assert "(" not in human.stdout.split("overrides")[1].splitlines()[0]  # no Python tuple text
