"""A call's state read from the log: ``backbone calls show``, and ``dlq list`` resolution.

Every call outcome (success, failure, retry, expiry, dead letter) is written to ``calls.results``
keyed by the call id, so all of a call's records sit in one partition: the state is a bounded scan
of that partition (its newest ``scan_limit`` records), not a projection. The latest outcome wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from streams._kafka_errors import translate
from streams._reader import reader
from streams.admin import partitions
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.settings import KafkaSettings
from streams.topics import Catalogue

#: Topics a call's outcomes live in, keyed by call id.
CALL_TOPICS = ("calls.results",)
#: How far back a lookup reads in each partition.
SCAN_LIMIT = 200_000

_STATES = {
    "call.succeeded": "succeeded",
    "call.failed": "failed",
    "call.retry_scheduled": "retrying",
    "call.expired": "expired",
    "call.dead_lettered": "dead-lettered",
}


@dataclass(frozen=True)
class CallRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: Event


@dataclass(frozen=True)
class CallState:
    call_id: str
    history: tuple[CallRecord, ...] = field(default=())

    @property
    def found(self) -> bool:
        return bool(self.history)

    @property
    def state(self) -> str:
        """``succeeded``, ``failed``, ``retrying``, ``expired``, ``dead-lettered`` or ``unknown``."""
        if not self.history:
            return "unknown"
        return _STATES.get(self.history[-1].event.event_type, "unknown")

    def as_json(self) -> dict[str, Any]:
        """The shape ``backbone calls show --json`` prints and ``GET /v1/calls/{id}`` answers."""
        return {
            "call_id": self.call_id,
            "state": self.state,
            "history": [
                {
                    "at": datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).isoformat(),
                    "ref": f"{r.partition}/{r.offset}",
                    "event_type": r.event.event_type,
                    "event": json.loads(r.event.model_dump_json()),
                }
                for r in self.history
            ],
        }


def partition_of(call_id: str, count: int) -> int:
    """The partition a call id's records go to (the producer's default partitioner)."""
    return int(DefaultPartitioner()(call_id.encode(), list(range(count)), list(range(count))))


async def call_history(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    call_ids: set[str],
    scan_limit: int = SCAN_LIMIT,
) -> dict[str, CallState]:
    """The states of ``call_ids`` from the newest ``scan_limit`` records of their partitions."""
    topics = [catalogue.name(t) for t in CALL_TOPICS]
    counts = {t: len(ps) for t, ps in (await partitions(kafka, topics)).items()}
    tps = sorted(
        {TopicPartition(t, partition_of(c, counts[t])) for t in topics for c in call_ids},
        key=lambda tp: (tp.topic, tp.partition),
    )
    found: dict[str, list[CallRecord]] = {c: [] for c in call_ids}
    async with reader(kafka) as consumer:
        try:
            consumer.assign(tps)
            firsts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(firsts[tp], ends[tp] - scan_limit))
            active = {tp for tp in tps if ends[tp] > firsts[tp]}
            while active:
                batches = await consumer.getmany(*active, timeout_ms=500)
                for records in batches.values():
                    for r in records:
                        if r.key is None or r.key.decode(errors="replace") not in call_ids:
                            continue
                        try:
                            event = await codec.decode(r.value or b"")
                        except BackboneError:
                            continue
                        call_id = str(getattr(event, "call_id", ""))
                        if call_id in found:
                            found[call_id].append(
                                CallRecord(r.topic, r.partition, r.offset, r.timestamp, event)
                            )
                for tp in list(active):
                    if await consumer.position(tp) >= ends[tp]:
                        active.discard(tp)
        except KafkaError as exc:
            raise translate(exc, "reading call outcomes") from exc
    return {
        c: CallState(c, tuple(sorted(h, key=lambda r: (r.timestamp_ms, r.topic, r.offset))))
        for c, h in found.items()
    }
