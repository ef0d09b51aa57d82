"""The call ledger on durable state: start-up with many keys, and memory while keys are evicted.

1. Start-up. ``REPLAY`` claims with their outcomes are written to ``calls.claims`` /
   ``calls.results`` and read into a fresh store (what a worker without a store, or with a lost
   one, does: the baseline, in records/s). The store is then grown to ``KEYS`` keys (the extra
   keys written through the store's own checkpoint path, as if followed), 1,000 more claims and
   outcomes are written after its checkpoint, and a follower is started on it: the time until it
   has caught up is the worker's ledger start-up (target < 5 s for 1,000,000 keys), against the
   full replay of ``2 x KEYS`` records at the baseline rate (extrapolated, said so).
2. Eviction. ``STREAM`` keys flow through a ledger (claim, then outcome, as the follower applies
   them) with a 1 s window, checkpointed every 10,000 keys: resident memory and the keys held are
   printed as the stream goes; with the window, both stay flat; without it the store keeps every key.

``BACKBONE_BENCH_LEDGER_KEYS`` (default 100,000, quick 20,000; the issue's figure is 1,000,000),
``BACKBONE_BENCH_LEDGER_REPLAY`` (20,000, quick 5,000), ``BACKBONE_BENCH_LEDGER_STREAM`` (200,000,
quick 50,000).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agents._ledger_store import LedgerStore
from agents.ledger import SUCCEEDED, CallLedger, Claim, LedgerFollower
from benchmarks._harness import Row, Stat, create_catalogue_topics, scaled
from infra.kafka.broker import LocalBroker
from infra.registry import RegistryServer
from streams import headers as h
from streams.codec import Codec
from streams.events.calls import CallStarted
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

KEYS = int(os.environ.get("BACKBONE_BENCH_LEDGER_KEYS", str(scaled(100_000, 20_000))))
REPLAY = min(KEYS, int(os.environ.get("BACKBONE_BENCH_LEDGER_REPLAY", str(scaled(20_000, 5_000)))))
STREAM = int(os.environ.get("BACKBONE_BENCH_LEDGER_STREAM", str(scaled(200_000, 50_000))))
TAIL = 1_000


def _claim(key: str, i: int) -> CallStarted:
    return CallStarted(
        call_id=f"c-{key}",
        service="sim",
        attempt=0,
        idempotency_key=key,
        claim_id=uuid.uuid4().hex,
        lane_topic="calls.lane.normal",
        lane_partition=i % 3,
        lane_offset=i,
        worker="bench",
    )


async def _write(kafka: KafkaSettings, codec: Codec, cat: Catalogue, keys: list[str]) -> None:
    results = cat.name("calls.results")
    async with Publisher(kafka, codec, cat) as publisher:
        sent = []
        for i, key in enumerate(keys):
            claim = _claim(key, i)
            headers = {h.CLAIM: claim.claim_id.encode()}
            sent.append(await publisher.send(claim, topic="calls.claims", headers=headers))
            outcome = [
                (h.IDEMPOTENCY_KEY, key.encode()),
                (h.CLAIM, claim.claim_id.encode()),
                (h.CALL_END, SUCCEEDED.encode()),
            ]  # the ledger reads an outcome's headers only
            sent.append(await publisher.send_raw(results, claim.call_id.encode(), b"-", outcome))
            if len(sent) >= 5_000:
                await publisher.acknowledged(sent)
                sent = []
        await publisher.acknowledged(sent)


async def _follow(
    kafka: KafkaSettings, codec: Codec, cat: Catalogue, path: Path
) -> tuple[LedgerFollower, float]:
    began = time.perf_counter()
    ledger = CallLedger(LedgerStore(path))
    follower = LedgerFollower(
        kafka, codec, cat.name("calls.claims"), cat.name("calls.results"), ledger
    )
    await follower.start()
    return follower, time.perf_counter() - began


def _grow(path: Path, keys: int) -> None:
    """Add synthetic settled keys through the store's checkpoint path, keeping its offsets."""
    store = LedgerStore(path)
    offsets = store.offsets()
    now = int(time.time() * 1000)
    have = store.count()
    for start in range(have, keys, 50_000):
        for i in range(start, min(keys, start + 50_000)):
            entry = store.change(f"synthetic-{i}", now)
            entry.claim_id = entry.settled = f"claim-{i}"
            entry.coords = ("calls.lane.normal", i % 3, i)
            entry.succeeded = True
        store.checkpoint(offsets, None)
    store.close()


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _startup(
    kafka: KafkaSettings, codec: Codec, cat: Catalogue, folder: Path
) -> dict[str, float]:
    path = folder / "ledger.sqlite"
    await _write(kafka, codec, cat, [f"k{i}" for i in range(REPLAY)])
    follower, replay_s = await _follow(kafka, codec, cat, path)
    replayed = follower.records_read
    await follower.stop()
    follower.ledger.store.close()
    rate = replayed / replay_s
    print(f"replay into a fresh store: {replayed:,} records in {replay_s:.2f} s = {rate:,.0f}/s")
    _grow(path, KEYS)
    await _write(kafka, codec, cat, [f"tail{i}" for i in range(TAIL)])
    follower, start_s = await _follow(kafka, codec, cat, path)
    try:
        held = follower.ledger.store.count()
        verdict = await follower.ledger.acquire(f"synthetic-{KEYS // 2}", ("x", 0, 0))
        tail = await follower.ledger.acquire("tail7", ("x", 0, 0))
        if (verdict, tail) != (Claim.SKIP, Claim.SKIP):
            raise RuntimeError(f"the restored ledger judged wrongly: {verdict}, {tail}")
        read = follower.records_read
    finally:
        await follower.stop()
        follower.ledger.store.close()
    full = 2 * KEYS / rate
    print(
        f"start-up on a store of {held:,} keys: {start_s:.2f} s, {read:,} records read "
        f"(target < 5 s); a full replay of {2 * KEYS:,} records at the rate above: "
        f"~{full:.1f} s (extrapolated); ratio {full / start_s:.1f}x"
    )
    return {"start_s": start_s, "full_replay_s": full, "held": held}


def _evict(folder: Path, window_s: float | None) -> int:
    """Stream ``STREAM`` keys through a ledger; the keys it holds at the end."""
    ledger = CallLedger(LedgerStore(folder / f"stream-{window_s}.sqlite"), window_s=window_s)
    began = time.perf_counter()
    marks = {STREAM // 10, STREAM // 2, STREAM}
    line = []
    for i in range(1, STREAM + 1):
        claim = _claim(f"s{i}", i)
        ledger.apply_claim(claim)
        ledger.apply_outcome(
            {
                h.IDEMPOTENCY_KEY: claim.idempotency_key.encode(),
                h.CLAIM: claim.claim_id.encode(),
                h.CALL_END: SUCCEEDED.encode(),
            }
        )
        if i % 10_000 == 0:
            ledger.checkpoint({})
        if i in marks:
            held = ledger.store.count()
            line.append(f"{i:,} keys seen: RSS {_rss_mib():.0f} MiB, {held:,} held")
    took = time.perf_counter() - began
    label = "no window" if window_s is None else f"window {window_s:g} s"
    print(f"  {label} ({STREAM / took:,.0f} keys/s): " + "; ".join(line))
    held = ledger.store.count()
    ledger.store.close()
    return held


async def _run(kafka: KafkaSettings) -> dict[str, float]:
    cat = Catalogue(prefix=f"bench-ledger-{uuid.uuid4().hex[:6]}.")
    server = RegistryServer(kafka, topic=f"{cat.prefix}_schemas", port=0)
    await server.start()
    try:
        await create_catalogue_topics(kafka, cat, "calls.claims", "calls.results")
        async with RegistryClient(RegistrySettings(url=server.url)) as client:
            with tempfile.TemporaryDirectory() as tmp:
                return await _startup(kafka, Codec(client), cat, Path(tmp))
    finally:
        await server.stop()


def _measure() -> dict[str, Any]:
    shared = os.environ.get("BACKBONE_KAFKA_BOOTSTRAP")  # the harness's broker, if it runs one
    if shared:
        found = asyncio.run(_run(KafkaSettings(bootstrap=shared, client_id="bench")))
    else:
        broker = LocalBroker()
        broker.start(timeout=300.0)  # a loaded box starts a broker slowly
        try:
            found = asyncio.run(_run(KafkaSettings(bootstrap=broker.bootstrap, client_id="bench")))
        finally:
            broker.stop()
    print(f"eviction, {STREAM:,} keys through the ledger (checkpoint every 10,000):")
    with tempfile.TemporaryDirectory() as tmp:
        held = {"window": _evict(Path(tmp), 1.0), "no window": _evict(Path(tmp), None)}
    return {**found, "held_at_end": held}


def rows() -> list[Row]:
    found = _measure()
    start = {"keys": int(found["held"]), "tail_records": 2 * TAIL, "repeats": 1,
             "baseline": f"full replay of {2 * KEYS:,} records at the measured replay rate "
                         f"({2 * REPLAY:,} records read), extrapolated"}  # fmt: skip
    stream = {"keys": STREAM, "window_s": 1.0, "checkpoint_every": 10_000, "repeats": 1}
    return [
        Row(f"ledger: worker start-up on a store of {int(found['held']):,} keys", "s",
            Stat.of(found["start_s"]), Stat.of(found["full_replay_s"]), "full replay", start,
            target="< 5 s at 1,000,000 keys"),
        Row(f"ledger: keys held after {STREAM:,} keys, 1 s window", "keys held",
            Stat.of(found["held_at_end"]["window"]), Stat.of(found["held_at_end"]["no window"]),
            "no window", stream, target="flat (bounded by the window)"),
    ]  # fmt: skip


def main() -> None:
    _measure()


if __name__ == "__main__":
    main()
