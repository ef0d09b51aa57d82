"""Pure pieces of the SDK: idempotence filter, replay header policy, dead-letter routing."""

from __future__ import annotations

from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord

from streams import headers as h
from streams._dead_letter import dead_letter_headers, dead_letter_topic
from streams.consumer import IdempotenceFilter, resolve_topic
from streams.errors import ConfigurationError, CorruptPayload, KafkaUnavailableError
from streams.producer import schema_id_of
from streams.topics import Catalogue


class _Evt:
    def __init__(self) -> None:
        self.event_id = uuid4()


def test_idempotence_filter_lets_each_id_through_once() -> None:
    seen = IdempotenceFilter(capacity=10)
    a, b = _Evt(), _Evt()
    assert seen.first_time(a)  # type: ignore[arg-type]
    assert seen.first_time(b)  # type: ignore[arg-type]
    assert not seen.first_time(a)  # type: ignore[arg-type]
    assert len(seen) == 2


def test_idempotence_filter_forgets_least_recently_seen() -> None:
    seen = IdempotenceFilter(capacity=2)
    a, b, c = _Evt(), _Evt(), _Evt()
    for e in (a, b):
        seen.first_time(e)  # type: ignore[arg-type]
    seen.first_time(a)  # type: ignore[arg-type]  # a becomes most recent
    seen.first_time(c)  # type: ignore[arg-type]  # evicts b
    assert a.event_id in seen
    assert b.event_id not in seen
    assert seen.first_time(b)  # type: ignore[arg-type]


def test_idempotence_filter_needs_room() -> None:
    with pytest.raises(ConfigurationError):
        IdempotenceFilter(capacity=0)


def test_side_effects_only_for_originals_or_explicit_replays() -> None:
    assert h.side_effects_allowed({})
    assert not h.side_effects_allowed({h.REPLAYED_FROM: b"t/0/1"})
    assert not h.side_effects_allowed({h.REPLAYED_FROM: b"t/0/1", h.REPLAY_SIDE_EFFECTS: b"no"})
    assert h.side_effects_allowed({h.REPLAYED_FROM: b"t/0/1", h.REPLAY_SIDE_EFFECTS: h.ALLOW})


def test_dead_letter_topic_follows_the_catalogue() -> None:
    cat = Catalogue(prefix="p.")
    assert dead_letter_topic(cat, "p.calls.requests") == "p.calls.dlt"
    assert dead_letter_topic(cat, "p.research.events") == "p.backbone.undecodable"
    assert dead_letter_topic(cat, "p.monitoring.alerts") == "p.backbone.undecodable"  # names none
    assert dead_letter_topic(cat, "elsewhere") == "p.backbone.undecodable"


def test_dead_letter_headers_name_reason_and_origin() -> None:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "p.calls.requests", 2, 41, 1700, 0, b"k", b"\xff", None, 1, 1, [("x", b"1")]
    )
    got = dict(dead_letter_headers(record, KafkaUnavailableError("boom")))
    assert got[h.DLT_REASON] == b"fatal"  # always a DeadLetterReason value
    assert got[h.DLT_MESSAGE] == b"boom"
    undecodable = dict(dead_letter_headers(record, CorruptPayload("bad bytes")))
    assert undecodable[h.DLT_REASON] == b"undecodable"
    assert got[h.DLT_ERROR_CLASS] == b"KafkaUnavailableError"
    assert got[h.DLT_ORIGINAL_TOPIC] == b"p.calls.requests"
    assert (got[h.DLT_ORIGINAL_PARTITION], got[h.DLT_ORIGINAL_OFFSET]) == (b"2", b"41")
    assert got[h.DLT_ORIGINAL_TIMESTAMP] == b"1700"
    assert got["x"] == b"1"


def test_topics_resolve_logical_or_real() -> None:
    cat = Catalogue(prefix="p.")
    assert resolve_topic(cat, "calls.requests") == "p.calls.requests"
    assert resolve_topic(cat, "my-own-topic") == "my-own-topic"


def test_schema_id_is_read_from_the_wire_format() -> None:
    assert schema_id_of(b"\x00\x00\x00\x01\x02rest") == 258
