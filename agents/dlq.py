"""Dead letters of the call pipeline: list them, show one, re-drive them.

Re-driving publishes the dead letter's original request to ``calls.requests`` again as a fresh
first attempt, with the *same* call id and idempotency key (so a call that meanwhile succeeded is
not executed twice) and a ``backbone-redriven-from`` header naming the dead letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import _headers as hd
from streams.admin import partitions
from streams.codec import Codec
from streams.connection import client_options
from streams.errors import BackboneError
from streams.events.calls import CallDeadLettered, CallRequested
from streams.producer import Publisher
from streams.settings import KafkaSettings
from streams.topics import Catalogue

DLT = "calls.dlt"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    event: CallDeadLettered
    headers: dict[str, bytes]

    @property
    def ref(self) -> str:
        return f"{self.partition}/{self.offset}"

    def summary(self) -> dict[str, object]:
        f = self.event.failure
        return {
            "ref": self.ref,
            "call_id": self.event.call_id,
            "service": self.event.service,
            "reason": f.reason.value,
            "error_class": f.error_class,
            "message": f.message,
            "attempts": f.attempts,
            "first_failure_at": f.first_failure_at.isoformat(),
            "last_failure_at": f.last_failure_at.isoformat(),
            "idempotency_key": self.event.request.idempotency_key,
        }


@dataclass(frozen=True)
class DeadLetterFilter:
    service: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    refs: frozenset[str] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        failure = letter.event.failure
        return (
            (self.service is None or letter.event.service == self.service)
            and (self.error_class is None or failure.error_class == self.error_class)
            and (self.since is None or failure.last_failure_at >= self.since)
            and (not self.refs or letter.ref in self.refs)
        )


async def read_dead_letters(
    kafka: KafkaSettings, codec: Codec, catalogue: Catalogue, where: DeadLetterFilter
) -> tuple[list[DeadLetter], int]:
    """Matching dead letters (in log order) and how many records could not be decoded."""
    topic = catalogue.name(DLT)
    tps = [TopicPartition(topic, p) for p in (await partitions(kafka, [topic]))[topic]]
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    undecodable = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for r in records:
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                    try:
                        event = await codec.decode(r.value) if r.value is not None else None
                    except BackboneError:
                        undecodable += 1
                        continue
                    if not isinstance(event, CallDeadLettered):
                        undecodable += 1
                        continue
                    letter = DeadLetter(
                        r.partition,
                        r.offset,
                        r.timestamp,
                        event,
                        {k: bytes(v) for k, v in r.headers},
                    )
                    if where.matches(letter):
                        letters.append(letter)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    letters.sort(key=lambda letter: (letter.timestamp_ms, letter.partition, letter.offset))
    return letters, undecodable


def redriven_request(letter: DeadLetter) -> CallRequested:
    """The request to publish again: a first attempt, same call id and idempotency key."""
    return letter.event.request.model_copy(update={"attempt": 0, "event_id": uuid4()})


async def redrive(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    letters: Sequence[DeadLetter],
    *,
    dry_run: bool = False,
) -> list[CallRequested]:
    requests = [redriven_request(letter) for letter in letters]
    if dry_run or not requests:
        return requests
    topic = catalogue.name(DLT)
    async with Publisher(kafka, codec, catalogue) as publisher:
        for letter, req in zip(letters, requests, strict=True):
            await publisher.publish(
                req,
                topic="calls.requests",
                headers={hd.REDRIVEN_FROM: f"{topic}/{letter.partition}/{letter.offset}".encode()},
            )
    return requests
