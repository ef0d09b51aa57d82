"""Hypothesis strategies that build any valid event (or nested record) from its model."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from hypothesis import strategies as st
from pydantic import BaseModel

from streams.events import Event

_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TEXT = st.text(max_size=40)
_TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
)


def for_type(annotation: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return st.none() | for_type(inner)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: _TEXT,
        int: _LONG,
        float: st.floats(allow_nan=False),
        bool: st.booleans(),
        bytes: st.binary(max_size=64),
        UUID: st.uuids(),
        datetime: _TIMES,
    }
    if annotation in simple:
        return simple[annotation]
    if typing.get_origin(annotation) is list:
        return st.lists(for_type(typing.get_args(annotation)[0]), max_size=4)
    if typing.get_origin(annotation) is dict:
        return st.dictionaries(_TEXT, for_type(typing.get_args(annotation)[1]), max_size=4)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return records(annotation)
    raise TypeError(f"no strategy for {annotation!r}")


def records(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    fields = {name: for_type(info.annotation) for name, info in model.model_fields.items()}
    return st.fixed_dictionaries(fields).map(lambda values: model(**values))


def events(event_type: type[Event]) -> st.SearchStrategy[Event]:
    return records(event_type)


def sample_value(annotation: Any, n: int) -> Any:
    """A deterministic valid value (tests that need one concrete event per type)."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return sample_value(inner, n)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        members = list(annotation)
        return members[n % len(members)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation, n)
    values: dict[Any, Any] = {
        str: f"value-{n}-é",
        int: n * 1_000_003,
        float: n + 0.25,
        bool: n % 2 == 1,
        bytes: bytes(range(n % 7, n % 7 + 9)),
        UUID: UUID(int=n + 1),
        datetime: datetime(2026, 1, 1 + n % 28, 12, n % 60, 7, 123_456, tzinfo=UTC),
    }
    if annotation in values:
        return values[annotation]
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        if item is str:
            return [f"item-{n}", "second"]
        return [sample_value(item, n), sample_value(item, n + 1)]
    if typing.get_origin(annotation) is dict:
        value = typing.get_args(annotation)[1]
        if value is str:
            return {"k": f"v{n}", "other": ""}
        return {"k": sample_value(value, n), "other": sample_value(value, n + 1)}
    raise TypeError(f"no sample for {annotation!r}")


def sample(model: type[Any], n: int = 1) -> Any:
    """An instance of ``model`` with every field set (optional ones too)."""
    return model(
        **{
            name: sample_value(info.annotation, n + i)
            for i, (name, info) in enumerate(model.model_fields.items())
        }
    )
