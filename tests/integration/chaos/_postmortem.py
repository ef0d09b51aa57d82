"""A per-record post-mortem of the calls that failed the fleet oracle: every record of the call
pipeline's topics (requests, lanes, retry tiers, claims, results) that names one of them, with
its partition, offset, timestamp, key and headers, written next to the workers' logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import partitions
from streams.codec import Codec
from streams.settings import KafkaSettings
from streams.topics import Catalogue

#: the pipeline's topics, in the order a call passes them
TOPICS = (
    "calls.requests",
    "calls.lane.high",
    "calls.lane.normal",
    "calls.lane.low",
    "calls.claims",
    "calls.results",
)


def topics_of(catalogue: Catalogue) -> list[str]:
    """Logical names of the pipeline's topics, retry tiers included."""
    tiers = sorted(s.name for s in catalogue if s.name.startswith("calls.retry."))
    return [*TOPICS[:4], *tiers, *TOPICS[4:]]


async def write_postmortem(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    suspects: Iterable[str],
    path: Path,
) -> Path:
    """Every record naming a suspect (a call id or idempotency key) to ``path``, one a line."""
    tokens = sorted(set(suspects))
    lines = [f"post-mortem of {len(tokens)} calls: {tokens}"]
    for logical in topics_of(catalogue):
        topic = catalogue.name(logical)
        lines.append(f"== {logical} ({topic})")
        for line in await _records(kafka, codec, topic):
            if any(token in line for token in tokens):
                lines.append(line)
    await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n")
    return path


async def _records(kafka: KafkaSettings, codec: Codec, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        try:
            found = await partitions(kafka, [topic])
        except Exception as exc:
            return [f"(not read: {type(exc).__name__}: {exc})"]
        tps = [TopicPartition(topic, p) for p in sorted(found.get(topic, []))]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for r in batch.get(tp, []):
                    try:
                        event = await codec.decode(r.value or b"")
                        value: object = event.model_dump(mode="json")
                    except Exception as exc:
                        value = f"undecodable: {exc!r}"
                    headers = {k: bytes(v).decode("utf-8", "replace") for k, v in r.headers}
                    when = datetime.fromtimestamp(r.timestamp / 1000, UTC).isoformat()
                    out.append(
                        f"p{r.partition} o{r.offset} t={when} key={r.key!r} "
                        f"headers={json.dumps(headers)} value={json.dumps(value, default=str)}"
                    )
        return out
    finally:
        await consumer.stop()
