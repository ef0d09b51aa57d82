"""The call ledger's durable store on the real broker: restart from the checkpoint, a lost store
restored from the topics, eviction beyond the window, duplicates changing nothing, and a worker
restarted on its store skipping what it handled before."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from agents._ledger_store import LedgerStore
from agents.ledger import SUCCEEDED, CallLedger, Claim, LedgerFollower
from agents.worker import CallWorker
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallStarted
from streams.settings import KafkaSettings
from streams.topics import Catalogue
from tests.integration.calls import _support
from tests.integration.calls._support import TopicReader, publish, request, running_worker, terminal
from tests.integration.calls.test_pipeline import _committed_to_end

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
OTHER = ("calls.lane.normal", 0, 999_999)  # coords of a lane record never claimed


def _claim(key: str, offset: int) -> CallStarted:
    return CallStarted(
        call_id=uuid.uuid4().hex,
        service="sim",
        attempt=0,
        idempotency_key=key,
        claim_id=uuid.uuid4().hex,
        lane_topic="calls.lane.normal",
        lane_partition=0,
        lane_offset=offset,
        worker="elsewhere",
    )


class Calls:
    """Writes claims and their outcomes the way a worker does (claim, then headers-only outcome)."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, catalogue: Catalogue) -> None:
        self._kafka, self._codec, self._catalogue = kafka, codec, catalogue
        self.claims = catalogue.name("calls.claims")
        self.results = catalogue.name("calls.results")

    async def write(
        self, claims: Sequence[CallStarted], *, at_ms: int | None = None, settle: bool = True
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self._kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for c in claims:
                value = await self._codec.encode(c, self.claims)
                key = c.idempotency_key.encode()
                await producer.send_and_wait(self.claims, value, key=key, timestamp_ms=at_ms)
                if settle:
                    headers = [
                        (h.IDEMPOTENCY_KEY, key),
                        (h.CLAIM, c.claim_id.encode()),
                        (h.CALL_END, SUCCEEDED.encode()),
                    ]
                    await producer.send_and_wait(
                        self.results,
                        b"outcome",
                        key=c.call_id.encode(),
                        headers=headers,
                        timestamp_ms=at_ms,
                    )
        finally:
            await producer.stop()

    @asynccontextmanager
    async def ledger(
        self, path: Path, window_s: float | None = 30 * 86_400.0
    ) -> AsyncIterator[LedgerFollower]:
        ledger = CallLedger(LedgerStore(path), window_s=window_s)
        follower = LedgerFollower(self._kafka, self._codec, self.claims, self.results, ledger)
        await follower.start()
        try:
            yield follower
        finally:
            await follower.stop()
            ledger.store.close()


def _files(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern))


def _lose(folder: Path, pattern: str) -> None:
    for leftover in _files(folder, pattern):
        leftover.unlink()


async def _verdict(
    follower: LedgerFollower, key: str, coords: tuple[str, int, int] = OTHER
) -> Claim:
    verdict = await follower.ledger.acquire(key, coords)
    if verdict is not Claim.SKIP:
        follower.ledger.abandon(key)
    return verdict


async def test_restart_resumes_from_the_checkpoint_and_a_lost_store_is_restored(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    calls = Calls(kafka_settings, codec, catalogue)
    path = tmp_path / "ledger.sqlite"
    first = [_claim(f"k{i}", i) for i in range(100)]
    await calls.write(first)
    async with calls.ledger(path) as follower:
        assert follower.records_read == 200  # a new store reads everything (within the window)
        assert await _verdict(follower, "k7") is Claim.SKIP
    later = [_claim(f"later{i}", 100 + i) for i in range(5)]
    await calls.write(later)
    async with calls.ledger(path) as follower:
        # resumed from the checkpoint: only what was written after it, no replay from offset 0
        assert follower.records_read == 10
        assert await _verdict(follower, "k7") is Claim.SKIP
        assert await _verdict(follower, "later3") is Claim.SKIP
        assert await _verdict(follower, "never-seen") is Claim.RUN
        # the same lane record read again after its claim was settled: skipped
        assert await _verdict(follower, "k9", ("calls.lane.normal", 0, 9)) is Claim.SKIP
    _lose(tmp_path, "ledger.sqlite*")  # the local store is lost
    async with calls.ledger(path) as follower:
        assert follower.records_read == 210  # restored from the topics
        assert follower.ledger.store.count() == 105
        assert await _verdict(follower, "k7") is Claim.SKIP
        assert await _verdict(follower, "later3") is Claim.SKIP


async def test_an_open_claim_survives_a_restart_as_unknown(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    calls = Calls(kafka_settings, codec, catalogue)
    path = tmp_path / "ledger.sqlite"
    claim = _claim("open", 5)
    async with calls.ledger(path) as follower:
        await calls.write([claim], settle=False)  # the worker died mid-call
        await follower.caught_up()
    async with calls.ledger(path) as follower:
        assert follower.records_read == 0
        assert await _verdict(follower, "open", ("calls.lane.normal", 0, 5)) is Claim.UNKNOWN
        assert await _verdict(follower, "open") is Claim.UNKNOWN


async def test_keys_beyond_the_window_are_evicted(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    calls = Calls(kafka_settings, codec, catalogue)
    now = int(time.time() * 1000)
    async with calls.ledger(tmp_path / "ledger.sqlite", window_s=3600) as follower:
        await calls.write([_claim(f"old{i}", i) for i in range(10)], at_ms=now - 2 * HOUR_MS)
        await calls.write([_claim(f"new{i}", 10 + i) for i in range(10)])
        await follower.caught_up()
        follower.checkpoint()
        assert follower.evicted >= 10  # (a claim and its outcome may be evicted apart)
        assert follower.ledger.store.count() == 10
        assert await _verdict(follower, "old3") is Claim.RUN  # forgotten: judged as never seen
        assert await _verdict(follower, "new3") is Claim.SKIP
    # a new store starts at the window: the old records are not even read
    async with calls.ledger(tmp_path / "fresh.sqlite", window_s=3600) as follower:
        assert follower.records_read == 20
        assert follower.ledger.store.count() == 10


async def test_duplicates_change_nothing(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    calls = Calls(kafka_settings, codec, catalogue)
    stamp = int(time.time() * 1000)
    claims = [_claim(f"d{i}", i) for i in range(20)]
    async with calls.ledger(tmp_path / "ledger.sqlite") as follower:
        await calls.write(claims, at_ms=stamp)
        await follower.caught_up()
        before = {c.idempotency_key: follower.ledger.store.get(c.idempotency_key) for c in claims}
        await calls.write(claims, at_ms=stamp)  # every record delivered again
        await follower.caught_up()
        follower.checkpoint()
        after = {c.idempotency_key: follower.ledger.store.get(c.idempotency_key) for c in claims}
        assert follower.records_read == 80
        assert after == before
        assert follower.ledger.store.count() == 20
        for c in claims:
            coords = (c.lane_topic, c.lane_partition, c.lane_offset)
            assert await _verdict(follower, c.idempotency_key, coords) is Claim.SKIP


async def test_a_restarted_worker_reads_only_after_its_checkpoint(
    kafka_settings: KafkaSettings, codec: Codec, catalogue: Catalogue, tmp_path: Path
) -> None:
    settings = _support.worker_settings(catalogue, simulated=["sim"], ledger_dir=tmp_path)
    reqs = [request("sim") for _ in range(20)]
    await publish(kafka_settings, codec, catalogue, reqs)
    async with (
        TopicReader(kafka_settings, codec, catalogue.name("calls.results")) as results,
    ):
        async with running_worker(kafka_settings, codec, catalogue, settings) as worker:
            await results.wait_for(lambda r: len(terminal(r)) >= 20)
            await worker._follower.caught_up()  # its reader fetches in batches: let it finish
        first_read = worker._follower.records_read  # its own claims and outcomes, echoed
        assert first_read >= 40
        assert _files(tmp_path, "*.sqlite"), "the ledger store is kept in ledger_dir"
        async with running_worker(kafka_settings, codec, catalogue, settings) as worker:
            # the store holds every key; only records after the checkpoint are read again
            assert worker.ledger.store.count() == 20
            assert worker._follower.records_read < first_read
            # the same requests again (client retries with the same keys): nothing runs twice
            await publish(kafka_settings, codec, catalogue, reqs)
            await _lanes_drained(worker)
        for _ in range(10):
            await results.poll()
        assert len(results.of("call.succeeded")) == 20


async def _lanes_drained(worker: CallWorker, timeout: float = 60.0) -> None:
    """Wait until the worker's stages committed everything (the duplicates were judged)."""
    group, cat = worker.settings.group_id, worker.catalogue
    for stage, topic in (("router", "calls.requests"), ("lanes", "calls.lane.normal")):
        await _committed_to_end(
            worker.kafka, f"{group}.{stage}", topic=cat.name(topic), timeout=timeout
        )
