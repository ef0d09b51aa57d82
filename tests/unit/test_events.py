from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.contract import avsc_path, drift, render
from streams.errors import UnknownEventType
from streams.events import EVENT_TYPES, Event, event_class
from streams.events._avro import from_avro_builder, to_avro_builder
from streams.events.calls import CallRequested, Priority
from streams.topics import TOPICS
from tests.strategies import events

ALL = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)


def test_event_types_are_exactly_the_catalogue_value_types() -> None:
    catalogued = {t for spec in TOPICS for t in spec.value_types}
    assert set(EVENT_TYPES) == catalogued


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.event_type)
def test_schema_names_and_documents_every_field(cls: type[Event]) -> None:
    schema = cls.avro_schema()
    assert f"{schema['namespace']}.{schema['name']}" == cls.fullname()
    assert cls.fullname() == f"io.backbone.{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
    assert schema["doc"]

    def walk(record: dict[str, Any]) -> None:
        for field in record["fields"]:
            assert field["doc"].strip(), f"{record['name']}.{field['name']} has no doc"
            nested = field["type"]
            if isinstance(nested, dict) and nested.get("type") == "record":
                walk(nested)

    walk(schema)
    header = [f["name"] for f in schema["fields"][:6]]
    assert header == [
        "event_id",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "source",
        "traceparent",
    ]
    fastavro.parse_schema(schema)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.event_type)
def test_committed_avsc_equals_the_generated_schema(cls: type[Event]) -> None:
    path = avsc_path(cls)
    assert path.exists(), f"run `backbone schemas generate`: {path} is missing"
    assert json.loads(path.read_text()) == cls.avro_schema(), f"{path} drifted from the model"
    assert path.read_text() == render(cls)


def test_drift_check_reports_a_schema_that_disagrees_with_its_model(tmp_path: Any) -> None:
    for cls in ALL:
        target = avsc_path(cls, tmp_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(cls))
    assert drift(tmp_path) == []
    edited = avsc_path(CallRequested, tmp_path)
    schema = json.loads(edited.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "priority"]
    edited.write_text(json.dumps(schema, indent=2) + "\n")
    (tmp_path / "calls" / "Orphan.avsc").write_text("{}")
    problems = drift(tmp_path)
    assert len(problems) == 2
    assert "CallRequested.avsc: differs from the model" in problems[0]
    assert "Orphan.avsc: no event model defines it" in problems[1]


def _through_avro(event: Event) -> Event:
    cls = type(event)
    schema = fastavro.parse_schema(cls.avro_schema())
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, to_avro_builder(cls)(event))
    buffer.seek(0)
    datum: Any = fastavro.schemaless_reader(buffer, schema, None)
    decoded = from_avro_builder(cls)(datum)
    assert isinstance(decoded, Event)
    return decoded


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.event_type)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_event_type_round_trips_through_avro(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(events(cls))
    decoded = _through_avro(event)
    assert decoded == event
    assert type(decoded) is cls
    assert decoded.model_dump() == event.model_dump()
    # A decoded event behaves like a validated one: it re-validates to itself and is hashable
    # like any frozen model, and its enums are enum members, not bare strings.
    assert cls.model_validate(decoded.model_dump()) == decoded
    for name in cls.model_fields:
        assert type(getattr(decoded, name)) is type(getattr(event, name))


def test_key_is_the_key_field_as_utf8() -> None:
    event = CallRequested(
        call_id="c-1", service="openai", operation="chat", payload="{}", idempotency_key="k"
    )
    assert event.key() == b"c-1"
    assert event.priority is Priority.NORMAL
    assert event.occurred_at.tzinfo is not None


def test_naive_datetimes_are_rejected() -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="timezone-aware"):
        CallRequested(
            call_id="c",
            service="s",
            operation="o",
            payload="{}",
            idempotency_key="k",
            deadline=datetime(2030, 1, 1),
        )


def test_event_class_by_type_or_full_name() -> None:
    assert event_class("call.requested") is CallRequested
    assert event_class("io.backbone.calls.CallRequested") is CallRequested
    with pytest.raises(UnknownEventType):
        event_class("io.backbone.calls.Nope")


def test_events_are_frozen() -> None:
    event = CallRequested(
        call_id="c", service="s", operation="o", payload="{}", idempotency_key="k"
    )
    with pytest.raises(ValueError, match="frozen"):
        event.service = "other"  # type: ignore[misc]
