"""``backbone produce | tail | replay | groups reset`` against the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infra.cli import main
from infra.testing.pytest_plugin import NewConsumer, NewTopic
from streams import Publisher, Subscriber, headers
from streams.codec import Codec
from streams.events import Event
from streams.producer import Coordinates
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration._events import call_requested, call_requested_json

pytestmark = pytest.mark.integration


async def _cli(env: dict[str, str], *args: str) -> Result:
    """The CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _publish_in_three_slices(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> tuple[list[list[tuple[Event, Coordinates]]], int, int]:
    """Three groups of events on one partition, with the two times that separate them."""
    slices: list[list[tuple[Event, Coordinates]]] = []
    cuts: list[int] = []
    async with Publisher(kafka, codec, catalogue) as publisher:
        for n, size in enumerate((3, 4, 3)):
            if n:
                await asyncio.sleep(0.05)
                cuts.append(_now_ms())
                await asyncio.sleep(0.05)
            events = [call_requested(10 * n + i) for i in range(size)]
            slices.append([(e, await publisher.publish(e, key=b"one-partition")) for e in events])
    return slices, cuts[0], cuts[1]


async def test_produce_reports_accepted_and_rejected_lines_then_tail_shows_them(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    bad = {**call_requested_json(2), "attempt": "twice"}
    path.write_text(
        "\n".join(
            [
                json.dumps(call_requested_json(1)),
                json.dumps(bad),
                "{nope",
                json.dumps(call_requested_json(3)),
            ]
        )
        + "\n"
    )
    produced = await _cli(env, "produce", "call.requested", "--file", str(path), "--json")
    assert produced.exit_code == 1, produced.output  # some lines were rejected
    report = json.loads(produced.stdout)
    assert (report["accepted"], report["rejected"]) == (2, 2)
    reasons = {r["line"]: r["reason"] for r in report["reasons"]}
    assert set(reasons) == {2, 3}
    assert "attempt" in reasons[2]

    one = await _cli(env, "produce", "call.requested", "--data", json.dumps(call_requested_json(4)))
    assert one.exit_code == 0, one.output
    assert "accepted 1, rejected 0" in one.stdout

    tailed = await _cli(env, "tail", "calls.requests", "--from-beginning", "--no-follow", "--json")
    assert tailed.exit_code == 0, tailed.output
    rows = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(r["event"]["call_id"] for r in rows) == ["call-1", "call-3", "call-4"]
    assert all(r["event_type"] == "call.requested" for r in rows)

    human = await _cli(
        env, "tail", "calls.requests", "--from-beginning", "--no-follow", "--limit", "1"
    )
    assert human.exit_code == 0, human.output
    assert len(human.stdout.splitlines()) == 1
    assert "call.requested" in human.stdout

    other = await _cli(
        env, "tail", "calls.requests", "--from-beginning", "--no-follow", "--type", "call.succeeded"
    )
    assert other.exit_code == 0
    assert other.stdout == ""


async def test_tail_since_starts_at_that_time(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    slices, first_cut, _ = await _publish_in_three_slices(kafka_settings, codec, catalogue)
    tailed = await _cli(
        env, "tail", "calls.requests", "--since", str(first_cut), "--no-follow", "--json"
    )
    assert tailed.exit_code == 0, tailed.output
    ids = [json.loads(line)["event"]["event_id"] for line in tailed.stdout.splitlines()]
    assert ids == [str(e.event_id) for e, _ in slices[1] + slices[2]]


async def test_replay_copies_exactly_the_time_slice(
    env: dict[str, str],
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    new_topic: NewTopic,
    new_consumer: NewConsumer,
) -> None:
    slices, since, until = await _publish_in_three_slices(kafka_settings, codec, catalogue)
    target = await new_topic(partitions=3)
    dry = await _cli(
        env, "replay", "--topic", "calls.requests", "--since", str(since),
        "--until", str(until), "--to", target, "--dry-run", "--json",
    )  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert (json.loads(dry.stdout)["planned"], json.loads(dry.stdout)["copied"]) == (4, 0)

    done = await _cli(
        env, "replay", "--topic", "calls.requests", "--since", str(since),
        "--until", str(until), "--to", target,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "copied 4 records" in done.stdout

    consumer = await new_consumer(target)
    copies = []
    for _ in range(20):
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            copies.extend(batch)
        if len(copies) >= 4:
            break
    await asyncio.sleep(0.3)  # anything beyond the slice would have arrived by now
    for batch in (await consumer.getmany(timeout_ms=300)).values():
        copies.extend(batch)
    assert len(copies) == 4
    source = catalogue.name("calls.requests")
    expected = {f"{source}/{c.partition}/{c.offset}": (e, c) for e, c in slices[1]}
    for copy in copies:
        hdrs = dict(copy.headers)
        event, original = expected.pop(hdrs[headers.REPLAYED_FROM].decode())
        assert copy.key == b"one-partition"
        assert copy.timestamp == original.timestamp_ms
        assert (await codec.decode(copy.value)).event_id == event.event_id
        assert headers.REPLAY_SIDE_EFFECTS not in hdrs
        assert not headers.side_effects_allowed(hdrs)
    assert not expected


async def test_replay_from_an_offset_with_side_effects_allowed(
    env: dict[str, str],
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    new_topic: NewTopic,
    new_consumer: NewConsumer,
) -> None:
    slices, _, _ = await _publish_in_three_slices(kafka_settings, codec, catalogue)
    last = slices[2][0][1]
    target = await new_topic()
    done = await _cli(
        env, "replay", "--topic", "calls.requests", "--from-offset",
        f"{last.partition}:{last.offset}", "--to", target, "--allow-side-effects", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["copied"] == 3
    consumer = await new_consumer(target)
    copies = []
    for _ in range(20):
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            copies.extend(batch)
        if len(copies) >= 3:
            break
    assert all(headers.side_effects_allowed(dict(c.headers)) for c in copies)
    assert all(dict(c.headers)[headers.REPLAY_SIDE_EFFECTS] == b"allow" for c in copies)


async def test_group_reset_prints_a_plan_then_executes_it(
    env: dict[str, str], kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue
) -> None:
    slices, since, _ = await _publish_in_three_slices(kafka_settings, codec, catalogue)
    group = f"g-{uuid.uuid4().hex}"
    async with Subscriber(kafka_settings, codec, catalogue, ["calls.requests"], group) as sub:
        seen = 0
        async for received in sub:
            await sub.commit(received)
            seen += 1
            if seen == 10:
                break
    partition = slices[0][0][1].partition
    plan = await _cli(env, "groups", "reset", group, "--topic", "calls.requests",
                      "--to-time", str(since), "--json")  # fmt: skip
    assert plan.exit_code == 0, plan.output
    moves = {m["partition"]: m for m in json.loads(plan.stdout)["moves"]}
    assert moves[partition]["current"] == slices[2][-1][1].offset + 1
    assert moves[partition]["target"] == slices[1][0][1].offset

    # nothing changed yet: the group resumes at the end
    human = await _cli(env, "groups", "reset", group, "--topic", "calls.requests",
                       "--to-time", str(since))  # fmt: skip
    assert "plan only" in human.stdout

    done = await _cli(env, "groups", "reset", group, "--topic", "calls.requests",
                      "--to-time", str(since), "--execute")  # fmt: skip
    assert done.exit_code == 0, done.output
    async with Subscriber(kafka_settings, codec, catalogue, ["calls.requests"], group) as sub:
        again = []
        async for received in sub:
            again.append(received.event.event_id)
            if len(again) == 7:
                break
    assert again == [e.event_id for e, _ in slices[1] + slices[2]]
