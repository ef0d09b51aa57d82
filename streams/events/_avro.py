"""Avro schemas generated from the pydantic models, and the model <-> Avro datum mappings.

The model is the single source of truth: :func:`schema_of` derives the record schema (full name
``io.backbone.<family>.<ClassName>``, a ``doc`` on the record and on every field) and the
committed ``.avsc`` files are generated from it (``backbone schemas generate``); a test fails if
they drift.

Python type             Avro
----------------------  -------------------------------------------------------------
str, int, float, bool   string, long, double, boolean
bytes                   bytes
UUID                    string, logicalType uuid
datetime (UTC)          long, logicalType timestamp-micros
StrEnum                 enum (named after the class, symbols = the values)
X | None = None         ["null", X], default null
list[X] (X primitive)   array of X
dict[str, X]            map of X (X primitive)
nested Record           record (defined once, then referenced by full name)

Models carry no value constraints beyond these types, so a datum that Avro schema resolution
accepted is a valid model: decoding builds models without re-validating (the codec's hot path).
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

AvroType = str | dict[str, Any] | list[Any]

_PRIMITIVES: dict[type, str] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NO_DEFAULT = object()


def _family(tp: type) -> str:
    return tp.__module__.rsplit(".", 1)[-1]


def _namespace(tp: type) -> str:
    return f"io.backbone.{_family(tp)}"


def _doc(tp: type) -> str:
    doc = tp.__doc__
    if not doc or doc is BaseModel.__doc__ or doc is StrEnum.__doc__:
        raise TypeError(f"{tp.__qualname__} needs a docstring: it becomes the Avro doc")
    return inspect.cleandoc(doc)


def _optional_inner(annotation: Any) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0]
        raise TypeError(f"only `X | None` unions are supported, not {annotation}")
    return None


def _avro_type(annotation: Any, where: str, defined: set[str]) -> AvroType:
    inner = _optional_inner(annotation)
    if inner is not None:
        return ["null", _avro_type(inner, where, defined)]
    if annotation in _PRIMITIVES:
        return _PRIMITIVES[annotation]
    if annotation is UUID:
        return {"type": "string", "logicalType": "uuid"}
    if annotation is datetime:
        return {"type": "long", "logicalType": "timestamp-micros"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and len(args) == 1 and args[0] in _PRIMITIVES:
        return {"type": "array", "items": _PRIMITIVES[args[0]]}
    if origin is dict and len(args) == 2 and args[0] is str and args[1] in _PRIMITIVES:
        return {"type": "map", "values": _PRIMITIVES[args[1]]}
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return _enum(annotation, defined)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _record(annotation, defined)
    raise TypeError(f"{where}: type {annotation!r} has no Avro mapping (see streams.events._avro)")


def _enum(tp: type[StrEnum], defined: set[str]) -> AvroType:
    fullname = f"{_namespace(tp)}.{tp.__name__}"
    if fullname in defined:
        return fullname
    defined.add(fullname)
    symbols = [member.value for member in tp]
    bad = [s for s in symbols if not _AVRO_NAME.match(s)]
    if bad:
        raise TypeError(f"{tp.__name__}: values {bad} are not valid Avro enum symbols")
    return {
        "type": "enum",
        "name": tp.__name__,
        "namespace": _namespace(tp),
        "doc": _doc(tp),
        "symbols": symbols,
    }


def _default(info: FieldInfo, avro_type: AvroType, where: str) -> Any:
    if info.default_factory is not None:
        # Collections start empty; generated values (ids, timestamps) have no Avro default on
        # purpose: a reader must never invent an event id or a time.
        made = info.default_factory()  # type: ignore[call-arg]
        return made if made in ([], {}) else _NO_DEFAULT
    value = info.default
    if value is PydanticUndefined:
        return _NO_DEFAULT
    if isinstance(avro_type, list) and value is not None:
        raise TypeError(f"{where}: an optional field must default to None (Avro union rule)")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("latin-1")  # the Avro JSON encoding of bytes defaults
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{where}: default {value!r} has no Avro JSON form")


def _record(tp: type[BaseModel], defined: set[str]) -> AvroType:
    fullname = f"{_namespace(tp)}.{tp.__name__}"
    if fullname in defined:
        return fullname
    defined.add(fullname)
    fields = []
    for name, info in tp.model_fields.items():
        where = f"{tp.__name__}.{name}"
        if not info.description:
            raise TypeError(f"{where} needs Field(description=...): it becomes the Avro doc")
        if info.metadata:
            raise TypeError(f"{where}: value constraints cannot be expressed in Avro; drop them")
        avro_type = _avro_type(info.annotation, where, defined)
        field: dict[str, Any] = {"name": name, "type": avro_type, "doc": info.description}
        default = _default(info, avro_type, where)
        if default is not _NO_DEFAULT:
            field["default"] = default
        fields.append(field)
    return {
        "type": "record",
        "name": tp.__name__,
        "namespace": _namespace(tp),
        "doc": _doc(tp),
        "fields": fields,
    }


@functools.cache
def _schema_cached(tp: type[BaseModel]) -> dict[str, Any]:
    schema = _record(tp, set())
    assert isinstance(schema, dict)
    return schema


def schema_of(tp: type[BaseModel]) -> dict[str, Any]:
    """The Avro record schema of a model (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(_schema_cached(tp))


# --- model <-> Avro datum ----------------------------------------------------------------------

Converter = Callable[[Any], Any]


def _from_avro_converter(annotation: Any) -> Converter | None:
    """How to turn what fastavro returns for this type into the model's value (None: as is)."""
    inner = _optional_inner(annotation)
    if inner is not None:
        convert = _from_avro_converter(inner)
        if convert is None:
            return None
        return lambda value: None if value is None else convert(value)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return from_avro_builder(annotation)
    return None


def _to_avro_converter(annotation: Any) -> Converter | None:
    inner = _optional_inner(annotation)
    if inner is not None:
        convert = _to_avro_converter(inner)
        if convert is None:
            return None
        return lambda value: None if value is None else convert(value)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return to_avro_builder(annotation)
    return None


def _trusted(tp: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    # What BaseModel.model_construct does, minus defaults handling: the reader schema guarantees
    # every field is present with its Avro-checked type, and models carry no further constraints.
    obj = tp.__new__(tp)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


@functools.cache
def from_avro_builder(tp: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """A function building a ``tp`` from a datum fastavro read with ``tp``'s own schema."""
    converters = {
        name: convert
        for name, info in tp.model_fields.items()
        if (convert := _from_avro_converter(info.annotation)) is not None
    }

    if not converters:
        return lambda datum: _trusted(tp, datum)

    def build(datum: dict[str, Any]) -> Any:
        for name, convert in converters.items():
            datum[name] = convert(datum[name])
        return _trusted(tp, datum)

    return build


@functools.cache
def to_avro_builder(tp: type[BaseModel]) -> Callable[[Any], dict[str, Any]]:
    """A function giving the datum fastavro writes for a ``tp`` instance (no copy when flat)."""
    converters = {
        name: convert
        for name, info in tp.model_fields.items()
        if (convert := _to_avro_converter(info.annotation)) is not None
    }
    if not converters:
        # fastavro only reads the mapping; StrEnum members are str, UUID/datetime are native.
        return lambda model: model.__dict__

    def build(model: Any) -> dict[str, Any]:
        datum = dict(model.__dict__)
        for name, convert in converters.items():
            datum[name] = convert(datum[name])
        return datum

    return build
