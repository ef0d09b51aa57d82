"""The :class:`Event` base: the header fields every event carries, and the registry of event types.

Every concrete event class declares ``event_type`` (the name used in the topic catalogue) and
``key_field`` (the field whose value is the Kafka record key). Defining a subclass registers it;
the Avro schema is generated from the model (:mod:`streams.events._avro`), so the model is the one
source of truth and the committed ``.avsc`` files are checked against it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.errors import UnknownEventType
from streams.events._avro import schema_of

#: Namespace root of every Backbone record: ``io.backbone.<family>.<ClassName>``.
NAMESPACE_ROOT = "io.backbone"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    """Base of every Avro-mapped model (events and the records nested in them).

    The family (``calls``, ``webhooks``...) is the name of the module that defines the class,
    so a record's Avro full name is ``io.backbone.<family>.<ClassName>``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    @classmethod
    def family(cls) -> str:
        return cls.__module__.rsplit(".", 1)[-1]

    @classmethod
    def fullname(cls) -> str:
        return f"{NAMESPACE_ROOT}.{cls.family()}.{cls.__name__}"

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_are_utc(cls, value: Any) -> Any:
        # Avro timestamp-micros has no zone: naive times would be ambiguous, so reject them.
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("datetimes must be timezone-aware (UTC)")
            return value.astimezone(UTC)
        return value


EVENT_TYPES: dict[str, type[Event]] = {}


class Event(Record):
    """Something that happened (or is requested) in Backbone; the value of a Kafka record."""

    event_type: ClassVar[str]
    key_field: ClassVar[str]

    event_id: UUID = Field(
        default_factory=uuid4, description="Unique id of this event; consumers deduplicate on it."
    )
    occurred_at: datetime = Field(
        default_factory=utc_now, description="When the event happened (UTC, microseconds)."
    )
    correlation_id: str | None = Field(
        default=None,
        description="Id shared by every event of one unit of work (e.g. a research run).",
    )
    causation_id: str | None = Field(
        default=None, description="event_id of the event that caused this one, if any."
    )
    source: str = Field(default="backbone", description="Component or system that emitted it.")
    traceparent: str | None = Field(
        default=None, description="W3C trace context of the emitting span (traceparent header)."
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if event_type is None:  # an abstract intermediate class
            return
        if event_type in EVENT_TYPES and EVENT_TYPES[event_type] is not cls:
            existing = EVENT_TYPES[event_type]
            raise TypeError(f"event type {event_type!r} is defined twice: {existing} and {cls}")
        EVENT_TYPES[event_type] = cls

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" in cls.__dict__ and cls.key_field not in cls.model_fields:
            raise TypeError(f"{cls.__name__}.key_field {cls.key_field!r} is not one of its fields")

    def key(self) -> bytes:
        """The Kafka record key: ``str()`` of the ``key_field`` value, UTF-8."""
        return str(getattr(self, self.key_field)).encode()

    @classmethod
    def avro_schema(cls) -> dict[str, Any]:
        """The Avro schema of this event, generated from the model (cached)."""
        return schema_of(cls)


def event_class(name: str) -> type[Event]:
    """The class of an event type (``"call.requested"``) or Avro full name."""
    if name in EVENT_TYPES:
        return EVENT_TYPES[name]
    for cls in EVENT_TYPES.values():
        if cls.fullname() == name:
            return cls
    raise UnknownEventType(f"unknown event type {name!r}")
