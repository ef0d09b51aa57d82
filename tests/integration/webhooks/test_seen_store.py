"""The webhook seen-set on its durable store: a restart resumes from the checkpoint (no full
replay of the topics), duplicates are refused across it, ids beyond the window go. The ids here
are markers on ``webhooks.seen`` (as older gateways wrote them); ids carried by the accepted
events themselves are covered in test_ingress."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from connectors.webhooks import signed_headers
from connectors.webhooks.gateway import SeenSet, seen_key
from streams.codec import Codec
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.webhooks._kit import PARTNER_SECRET, ingress_settings, running_gateway

pytestmark = pytest.mark.integration

HOUR_MS = 3600 * 1000


async def _write(
    producer: AIOKafkaProducer, topic: str, keys: list[bytes], at_ms: int | None = None
) -> None:
    for key in keys:
        await producer.send(topic, b"1", key=key, timestamp_ms=at_ms)
    await producer.flush()


async def test_a_restart_reads_only_what_came_after_its_checkpoint(
    kafka_settings: KafkaSettings,
    catalogue: Catalogue,
    producer: AIOKafkaProducer,
    tmp_path: Path,
) -> None:
    topic = catalogue.name("webhooks.seen")
    first = [seen_key("partner", f"msg_{n}") for n in range(300)]
    await _write(producer, topic, first)
    seen = SeenSet(kafka_settings, None, markers=topic, store_dir=tmp_path)
    await seen.start()
    try:
        assert seen.records_read == len(first)
        assert all(key in seen for key in first)
        seen.add(b"partner/accepted-here")  # its marker not (yet) written to the topic
    finally:
        await seen.stop()

    later = [seen_key("partner", f"msg_later_{n}") for n in range(20)]
    await _write(producer, topic, later)
    again = SeenSet(kafka_settings, None, markers=topic, store_dir=tmp_path)
    await again.start()
    try:
        assert again.records_read == len(later)  # from the checkpoint, not the beginning
        assert again.pending <= len(later)  # memory holds what came since, the rest is on disk
        for key in [*first, *later, b"partner/accepted-here"]:
            assert key in again, key
        assert seen_key("partner", "msg_never") not in again
        assert len(again) == len(first) + len(later) + 1
    finally:
        await again.stop()


async def test_ids_beyond_the_window_are_not_read_and_are_evicted(
    kafka_settings: KafkaSettings,
    catalogue: Catalogue,
    producer: AIOKafkaProducer,
    tmp_path: Path,
) -> None:
    topic = catalogue.name("webhooks.seen")
    now = int(time.time() * 1000)
    old = [seen_key("partner", f"old_{n}") for n in range(30)]
    recent = [seen_key("partner", f"recent_{n}") for n in range(10)]
    await _write(producer, topic, old, at_ms=now - 3 * HOUR_MS)
    await _write(producer, topic, recent, at_ms=now)

    # a new store reads the window only
    fresh = SeenSet(kafka_settings, None, markers=topic, store_dir=tmp_path / "new", window_s=3600)
    await fresh.start()
    try:
        assert fresh.records_read == len(recent)
        assert not any(key in fresh for key in old)
        assert all(key in fresh for key in recent)
    finally:
        await fresh.stop()

    # a store that holds old ids (a longer window before) forgets them at its next checkpoint
    held = tmp_path / "held"
    wide = SeenSet(kafka_settings, None, markers=topic, store_dir=held, window_s=24 * 3600)
    await wide.start()
    await wide.stop()
    narrow = SeenSet(kafka_settings, None, markers=topic, store_dir=held, window_s=3600)
    await narrow.start()
    try:
        assert narrow.records_read == 0
        narrow.checkpoint()
        assert narrow.evicted == len(old)
        assert len(narrow) == len(recent)
        assert not any(key in narrow for key in old)
    finally:
        await narrow.stop()


async def test_a_gateway_restarted_on_its_store_refuses_the_duplicate(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    base_settings = ingress_settings()
    settings = base_settings.model_copy(
        update={"ingress": base_settings.ingress.model_copy(update={"seen_dir": tmp_path})}
    )
    body = b'{"n": 7}'
    msg_id = "msg_restart_on_store"

    async def post() -> int:
        headers = signed_headers([PARTNER_SECRET], msg_id, body)
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            return r.status

    async with running_gateway(kafka_settings, codec, catalogue, settings) as (base, _):
        url = f"{base}/webhooks/partner"
        assert await post() == 202
    assert (tmp_path / "seen.sqlite").exists()
    async with running_gateway(kafka_settings, codec, catalogue, settings) as (base, gateway):
        url = f"{base}/webhooks/partner"
        assert gateway.seen.records_read <= 1  # at most its own event, read after the checkpoint
        assert await post() == 200
