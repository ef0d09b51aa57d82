"""Reading a topic the way ``kcat -C`` does, for ``backbone tail``.

Each partition starts at a :class:`Position` (beginning, end, an offset, the last N, a time) and
stops at ``until`` (a time), at the end offsets seen at start (``--no-follow``), or never.
Records that are not Avro in our wire format (``_schemas`` holds JSON, for instance) are shown
as text rather than skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.cli._time import Position, format_ms
from infra.errors import CommandLineError
from streams import headers as h
from streams._kafka_errors import translate
from streams._reader import reader
from streams.admin import partitions
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.settings import KafkaSettings


@dataclass(frozen=True)
class TailOptions:
    topic: str
    start: Position
    until_ms: int | None = None
    partitions: tuple[int, ...] = ()
    key: str | None = None
    types: frozenset[str] = frozenset()
    raw: bool = False
    follow: bool = True


@dataclass(frozen=True)
class Shown:
    """One record as ``tail`` prints it: decoded when possible, raw otherwise."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: dict[str, bytes]
    value: bytes
    event: Event | None
    undecodable: str | None = None  # why the value is not one of our events

    def text_value(self) -> str:
        return self.value.decode("utf-8", errors="replace")

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": format_ms(self.timestamp_ms),
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "headers": {k: v.decode(errors="replace") for k, v in self.headers.items()},
        }
        if self.event is not None:
            data["event_type"] = self.event.event_type
            data["event"] = self.event.model_dump(mode="json")
        else:
            data["value_base64"] = base64.b64encode(self.value).decode()
            if self.undecodable:
                data["undecodable"] = self.undecodable
        return data

    def human(self) -> str:
        key = self.key.decode(errors="replace") if self.key is not None else "-"
        head = f"{format_ms(self.timestamp_ms)} {self.partition}@{self.offset} key={key}"
        if self.event is not None:
            fields = self.event.model_dump(mode="json", exclude={"event_id", "occurred_at"})
            shown = " ".join(
                f"{k}={json.dumps(v)}" for k, v in fields.items() if v not in (None, "", [], {})
            )
            replayed = " [replay]" if h.REPLAYED_FROM in self.headers else ""
            body = f"{self.event.event_type}{replayed} id={self.event.event_id} {shown}"
        else:
            body = f"(not an event: {self.undecodable}) {self.text_value()}"
        extra = " ".join(
            f"{k}={v.decode(errors='replace')}"
            for k, v in self.headers.items()
            if k != "traceparent"
        )
        return f"{head} {body}" + (f"  [{extra}]" if extra else "")


async def _seek(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], start: Position
) -> dict[TopicPartition, int]:
    """Position every partition; returns each partition's end offset at this moment."""
    firsts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    at: dict[TopicPartition, Any] = {}
    if start.kind == "time":
        at = await consumer.offsets_for_times(dict.fromkeys(tps, start.value))
    for tp in tps:
        if start.kind == "beginning":
            offset = firsts[tp]
        elif start.kind == "end":
            offset = ends[tp]
        elif start.kind == "offset":
            offset = min(max(start.value, firsts[tp]), ends[tp])
        elif start.kind == "last":
            offset = max(firsts[tp], ends[tp] - start.value)
        else:
            found = at.get(tp)
            offset = found.offset if found is not None else ends[tp]
        consumer.seek(tp, offset)
    return dict(ends)


async def _shown(codec: Codec | None, tp: TopicPartition, record: Any) -> Shown:
    value: bytes = record.value or b""
    event, why = None, None
    if codec is not None:
        try:
            event = codec.decode_cached(value) or await codec.decode(value)
        except BackboneError as exc:
            if exc.retriable:
                raise
            why = exc.code
    return Shown(
        tp.topic,
        tp.partition,
        record.offset,
        record.timestamp,
        record.key,
        dict(record.headers),
        value,
        event,
        why,
    )


def _wanted(shown: Shown, options: TailOptions) -> bool:
    if options.key is not None and (shown.key or b"").decode(errors="replace") != options.key:
        return False
    if options.types:
        return shown.event is not None and shown.event.event_type in options.types
    return True


async def tail_records(
    kafka: KafkaSettings, codec: Codec | None, options: TailOptions
) -> AsyncIterator[Shown]:
    """The records ``options`` select, in per-partition order."""
    ids = (await partitions(kafka, [options.topic]))[options.topic]
    if options.partitions:
        missing = sorted(set(options.partitions) - set(ids))
        if missing:
            raise CommandLineError(
                f"{options.topic} has no partition {', '.join(map(str, missing))} "
                f"(it has {len(ids)}: 0..{len(ids) - 1})"
            )
        ids = sorted(options.partitions)
    tps = [TopicPartition(options.topic, p) for p in ids]
    async with reader(kafka) as consumer:
        consumer.assign(tps)
        try:
            ends = await _seek(consumer, tps, options.start)
        except KafkaError as exc:
            raise translate(exc, f"positioning on {options.topic}") from exc
        active = set(tps)
        past = options.until_ms is not None and options.until_ms <= time.time() * 1000
        while active:
            if not options.follow or past:
                for tp in list(active):
                    if await consumer.position(tp) >= ends[tp]:
                        active.discard(tp)  # reached the end seen at start
                if not active:
                    return
            try:
                batches = await consumer.getmany(*active, timeout_ms=500)
            except KafkaError as exc:
                raise translate(exc, f"reading {options.topic}") from exc
            for tp, records in batches.items():
                for record in records:
                    if tp not in active:
                        break
                    if options.until_ms is not None and record.timestamp >= options.until_ms:
                        active.discard(tp)
                        break
                    shown = await _shown(None if options.raw else codec, tp, record)
                    if _wanted(shown, options):
                        yield shown
            await asyncio.sleep(0)
