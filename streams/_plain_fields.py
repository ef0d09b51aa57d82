"""A reader of some fields of an Avro record: a schema's plan, run in C or in Python.

Why: a projection rebuild reads millions of records and needs a few fields of each (the metrics
projection: 10 of about 20, plus the runner's two). :func:`streams._plain_avro.plain_reader` builds
every value; here the record's schema becomes a plan (:func:`plan`), one step per value in the
order of the bytes, and the values not asked for are stepped over without building them. The
compiled module (:mod:`streams._compiled`, built by ``make install``) runs the plan; without it,
:func:`python_fields_reader` does, the same steps in Python (its reference in the tests). What
either returns for the fields it keeps equals the plain reader's; tests hold it so on valid,
truncated and fuzzed bytes.

Fields not kept are checked for structure (lengths within the buffer, union branches, enum
symbols, boolean bytes, the record's end), not for content: their text is not decoded, so
invalid UTF-8 or a malformed uuid there is not refused. Complex values (records, arrays, maps,
bytes, fixed, unions other than ``["null", X]``) go through the plain reader's closures.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from streams._plain_avro import (
    PlainReadError,
    Read,
    _boolean,
    _compile,
    _double,
    _float,
    _long,
    _null,
    _size,
    _string,
    _uuid,
)

try:  # built by `make install` (infra.build_ext); without it, the plan runs in Python
    from streams._compiled import FieldsReader as _Compiled

    FieldsReader: type[_Compiled] | None = _Compiled
except ImportError:  # pragma: no cover - a checkout where the extension was not built
    FieldsReader = None

_SIMPLE = {"null", "boolean", "int", "long", "float", "double", "string"}
#: a step of a plan: (step name, slot of the kept field or -1, argument)
Step = tuple[str, int, Any]


def fields_reader(schema: Any, fields: Collection[str]) -> Read:
    """A reader of a record schema returning a dict of the ``fields`` it has (others skipped):
    the compiled one when :mod:`streams._compiled` is built, else the Python one (same answers,
    several times the CPU)."""
    steps, keys = plan(schema, fields)
    if FieldsReader is None:
        return python_fields_reader(steps, keys)
    return FieldsReader(steps, keys).read


def plan(schema: Any, fields: Collection[str]) -> tuple[list[Step], list[str]]:
    """A record schema's steps, one per value in the order of the bytes (``(step, slot,
    argument)``, slot -1 for a value stepped over), and the names of the kept fields."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise PlainReadError("a fields reader reads records")
    named: dict[str, Any] = {}
    _compile(schema, named, "")  # every named type, for the fields read by closure
    space = schema.get("namespace", "")
    steps: list[Step] = []
    keys: list[str] = []
    for field in schema["fields"]:
        slot = -1
        if field["name"] in fields:
            slot = len(keys)
            keys.append(field["name"])
        _plan_step(field["type"], slot, steps, named, space)
    return steps, keys


def _plan_step(
    schema: Any, slot: int, steps: list[Step], named: dict[str, Any], space: str
) -> None:
    """Append the steps of one value of ``schema``."""
    while isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        schema = schema["type"]  # {"type": {...}}: a wrapped schema
    kind, logical = _kind(schema)
    if kind == "int":
        steps.append(("long", slot, None))
    elif kind == "string" and logical == "uuid":  # as the plain reader: normalised or refused
        steps.append(("uuid", slot, _uuid))
    elif kind == "enum":
        steps.append(("enum", slot, tuple(schema["symbols"])))
    elif kind == "optional":
        at = len(steps)
        steps.append(("optional", slot, 0))
        _plan_step(schema[1], slot, steps, named, space)
        steps[at] = ("optional", slot, len(steps) - at - 1)  # the steps a null steps over
    elif kind in _SIMPLE:
        steps.append((kind, slot, None))
    else:
        steps.append(("closure", slot, _compile(schema, named, space)[0]))


def _kind(schema: Any) -> tuple[str, str | None]:
    """The shape a step reads, or ``"other"`` (a closure); and the logical type."""
    if isinstance(schema, str):
        return (schema if schema in _SIMPLE else "other"), None
    if isinstance(schema, list):
        if len(schema) == 2 and schema[0] == "null" and schema[1] != "null":
            return "optional", None
        return "other", None
    kind = schema.get("type")
    if kind in _SIMPLE:
        return str(kind), schema.get("logicalType")
    if kind == "enum":
        return "enum", None
    return "other", None


def _skip_text(buf: bytes, pos: int, arg: Any) -> tuple[None, int]:
    size, pos = _size(buf, pos)
    return None, pos + size


def _enum(buf: bytes, pos: int, symbols: tuple[str, ...]) -> tuple[str, int]:
    index, pos = _long(buf, pos)
    if not 0 <= index < len(symbols):
        raise PlainReadError(f"enum symbol {index} of {len(symbols)}")
    return symbols[index], pos


#: how each step reads its value (kept or not): ``(buf, pos, argument) -> (value, end)``
_READS: dict[str, Callable[[bytes, int, Any], tuple[Any, int]]] = {
    "null": lambda buf, pos, arg: _null(buf, pos),
    "boolean": lambda buf, pos, arg: _boolean(buf, pos),
    "long": lambda buf, pos, arg: _long(buf, pos),
    "float": lambda buf, pos, arg: _float(buf, pos),
    "double": lambda buf, pos, arg: _double(buf, pos),
    "string": lambda buf, pos, arg: _string(buf, pos),
    "uuid": lambda buf, pos, arg: arg(buf, pos),
    "enum": _enum,
    "closure": lambda buf, pos, arg: arg(buf, pos),
}
#: a step over a value not kept: text is not decoded
_SKIPS = {**_READS, "string": _skip_text, "uuid": _skip_text}


def python_fields_reader(steps: list[Step], keys: list[str]) -> Read:
    """A plan run in Python: what :class:`streams._compiled.FieldsReader` does, step for step."""
    run = tuple(
        (None if s == "optional" else _READS[s] if slot >= 0 else _SKIPS[s], s, slot, arg)
        for s, slot, arg in steps
    )
    names = tuple(keys)

    def read(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        i = 0
        while i < len(run):
            step, name, slot, arg = run[i]
            i += 1
            if name == "optional":
                branch = buf[pos]
                pos += 1
                if branch == 0:
                    if slot >= 0:
                        out[names[slot]] = None
                    i += arg  # over the other branch's steps
                elif branch != 2:
                    raise PlainReadError(f"union branch byte {branch} of 2 branches")
                continue
            assert step is not None
            value, pos = step(buf, pos, arg)
            if slot >= 0:
                out[names[slot]] = value
        if pos > len(buf):
            raise PlainReadError("the record runs past the end")
        return out, pos

    return read
