"""Resume from the log: no gap and no duplicate across a disconnect, or an explicit resync."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from connectors.gateway import GatewayService
from streams.admin import admin_client
from streams.producer import Publisher
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.realtime._kit import (
    Positions,
    WsClient,
    new_id,
    progress,
    publish_all,
    running_gateway,
    token,
    ws_clients,
)

pytestmark = pytest.mark.integration

CHANNEL = "research:*"


async def _read_all(client: WsClient, positions: Positions, until: int) -> None:
    """Read frames (tracking positions) until ``until`` publications of CHANNEL arrived."""
    async with asyncio.timeout(120):
        while len(client.of(CHANNEL)) < until:
            positions.update(await client.next())


def _steps(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(f["payload"]["research_id"], f["payload"]["steps_completed"]) for f in frames]


async def test_resume_after_a_disconnect_replays_the_gap_then_continues_live_exactly_once(
    gateway: GatewayService, publisher: Publisher
) -> None:
    runs = [new_id() for _ in range(6)]  # several keys: several partitions
    before = [progress(runs[i % 6], i) for i in range(12)]
    offline = [progress(runs[i % 6], i) for i in range(12, 40)]
    during = [progress(runs[i % 6], i) for i in range(40, 80)]
    grant = token([CHANNEL])
    positions = Positions()
    async with ws_clients(gateway) as connect:
        first = await connect(grant)
        await first.send(op="subscribe", channel=CHANNEL)
        positions.update(await first.until("subscribed"))
        await publish_all(publisher, before)
        await _read_all(first, positions, len(before))
        await first.ws.close()

        await publish_all(publisher, offline)  # missed while disconnected
        # ...and more published while the client resumes: the replay/live hand-over is racing.
        racing = asyncio.create_task(publish_all(publisher, during))
        second = await connect(grant)
        await second.send(op="subscribe", channel=CHANNEL, since=positions.since(), id="resume")
        await _read_all(second, positions, len(offline) + len(during))
        await racing
        await second.send(op="ping", id="end")
        await second.until("pong")

    got = _steps(second.of(CHANNEL))
    expected = _steps([{"payload": e.model_dump(mode="json")} for e in offline + during])
    assert len(got) == len(set(got)), "no duplicates"
    assert sorted(got) == sorted(expected), "no gap, and nothing from before the disconnect"
    for run in runs:  # each run's events keep their order (one key, one partition)
        ours = [step for rid, step in got if rid == run]
        assert ours == sorted(ours)
    subscribed = next(f for f in second.frames if f["type"] == "subscribed")
    assert subscribed["id"] == "resume"
    # the missed records came from Kafka (the fan-out may have read the last few of them itself
    # by the time of the resume: those arrive live, still exactly once)
    assert subscribed["replayed"] > 0


async def test_resume_from_positions_with_nothing_missed_replays_nothing(
    gateway: GatewayService, publisher: Publisher
) -> None:
    grant = token([CHANNEL])
    positions = Positions()
    async with ws_clients(gateway) as connect:
        first = await connect(grant)
        await first.send(op="subscribe", channel=CHANNEL)
        positions.update(await first.until("subscribed"))
        await publish_all(publisher, [progress(new_id(), 1)])
        await _read_all(first, positions, 1)
        second = await connect(grant)
        await second.send(op="subscribe", channel=CHANNEL, since=positions.since())
        assert (await second.until("subscribed"))["replayed"] == 0
        live = progress(new_id(), 2)
        await publish_all(publisher, [live])
        (only,) = await second.publications(CHANNEL, 1)
        assert only["event_id"] == str(live.event_id)


async def test_checkpoints_advance_a_quiet_channel(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    publisher: Publisher,
) -> None:
    """A channel that matches nothing still learns how far the log was read (`positions`)."""
    async with (
        running_gateway(kafka_settings, schema_registry, catalogue, checkpoint_s=0.5) as gw,
        ws_clients(gw) as connect,
    ):
        client = await connect(token(["research:*"]))
        await client.send(op="subscribe", channel="research:quiet")
        start = await client.until("subscribed")
        await publish_all(publisher, [progress(new_id(), i) for i in range(5)])
        checkpoint = await client.until("positions")
        before = sum(p["offset"] for p in start["positions"])
        assert sum(p["offset"] for p in checkpoint["positions"]) > before
        assert not client.of("research:quiet")


async def _resync_reason(
    gateway: GatewayService, since: list[dict[str, Any]], channel: str = CHANNEL
) -> str:
    async with ws_clients(gateway) as connect:
        client = await connect(token([CHANNEL]))
        await client.send(op="subscribe", channel=channel, since=since, id="r")
        frame = await client.until("resync_required")
        assert frame["channel"] == channel
        assert frame["id"] == "r"
        # the subscription was not made: the client subscribes afresh after resyncing
        await client.send(op="subscribe", channel=channel)
        assert (await client.until("subscribed"))["replayed"] == 0
        return str(frame["reason"])


async def _current(gateway: GatewayService) -> list[dict[str, Any]]:
    async with ws_clients(gateway) as connect:
        client = await connect(token([CHANNEL]))
        await client.send(op="subscribe", channel=CHANNEL)
        positions: list[dict[str, Any]] = (await client.until("subscribed"))["positions"]
        return positions


async def test_resync_required_when_the_epoch_changed(gateway: GatewayService) -> None:
    since = [{**p, "epoch": "AAAAAAAAAAAAAAAAAAAAAA"} for p in await _current(gateway)]
    assert await _resync_reason(gateway, since) == "epoch_changed"


async def test_resync_required_when_a_partition_is_missing_or_unknown_or_ahead(
    gateway: GatewayService,
) -> None:
    current = await _current(gateway)
    assert await _resync_reason(gateway, current[:1]) == "position_missing"
    unknown = [*current, {**current[0], "partition": 99}]
    assert await _resync_reason(gateway, unknown) == "unknown_position"
    ahead = [{**current[0], "offset": current[0]["offset"] + 1000}, *current[1:]]
    assert await _resync_reason(gateway, ahead) == "position_ahead"


async def test_resync_required_when_the_position_was_deleted_from_the_log(
    gateway: GatewayService, publisher: Publisher, kafka_settings: KafkaSettings
) -> None:
    start = await _current(gateway)
    run = new_id()
    await publish_all(publisher, [progress(run, i) for i in range(10)])
    after = await _current(gateway)
    moved = [
        p
        for p in after
        if p["offset"]
        > next(s for s in start if s["partition"] == p["partition"] and s["topic"] == p["topic"])[
            "offset"
        ]
    ]
    assert moved, "the records landed somewhere"
    # Retention (here: an explicit deletion up to the end) removes what the old position points at.
    async with admin_client(kafka_settings) as admin:
        await admin.delete_records(
            {
                TopicPartition(p["topic"], p["partition"]): RecordsToDelete(p["offset"] + 1)
                for p in moved
            }
        )
    assert await _resync_reason(gateway, start) == "out_of_retention"
    # a position at the new log start is fine: nothing is missing
    assert await _resync_or_none(gateway, after) is None


async def _resync_or_none(gateway: GatewayService, since: list[dict[str, Any]]) -> str | None:
    async with ws_clients(gateway) as connect:
        client = await connect(token([CHANNEL]))
        await client.send(op="subscribe", channel=CHANNEL, since=since)
        async with asyncio.timeout(60):
            while True:
                frame = await client.next()
                if frame["type"] == "resync_required":
                    return str(frame["reason"])
                if frame["type"] == "subscribed":
                    return None


async def test_resync_required_when_too_far_behind(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    publisher: Publisher,
) -> None:
    async with running_gateway(
        kafka_settings, schema_registry, catalogue, max_replay_records=5
    ) as gw:
        start = await _current(gw)
        await publish_all(publisher, [progress(new_id(), i) for i in range(10)])
        assert await _resync_reason(gw, start) == "too_far_behind"


async def test_unsubscribing_during_a_replay_stops_it(
    gateway: GatewayService, publisher: Publisher
) -> None:
    start = await _current(gateway)
    await publish_all(publisher, [progress(new_id(), i) for i in range(50)])
    async with ws_clients(gateway) as connect:
        client = await connect(token([CHANNEL]))
        await client.send(op="subscribe", channel=CHANNEL, since=start)
        await client.send(op="unsubscribe", channel=CHANNEL, id="u")
        await client.until("unsubscribed")
        await client.send(op="subscribe", channel=CHANNEL, id="again")
        frame = await client.until("subscribed")
        if frame.get("id") != "again":  # the replay finished before the unsubscribe landed
            frame = await client.until("subscribed")
        assert frame["id"] == "again"
        assert frame["replayed"] == 0
        await client.send(op="ping", id="end")
        await client.until("pong")
        assert not [f for f in client.frames if f["type"] == "error"]
