"""A reader of some fields of an Avro record, generated as one Python function per schema.

Why: a projection rebuild reads millions of records and needs a few fields of each (the metrics
projection: 11 of about 20). :func:`streams._plain_avro.plain_reader` costs one Python call per
field; here the record's schema becomes the source of a single function with every primitive
read inline (the one- and two-byte varints, an eight-byte timestamp as one 64-bit read, a
short string and a canonical uuid first), and the fields not asked for
are stepped over without building their values. What it returns for the fields it keeps equals
the plain reader's; a test holds it so on fuzzed bytes.

Fields not kept are checked for structure (lengths within the buffer, union branches, enum
symbols, boolean bytes, the record's end), not for content: their text is not decoded, so
invalid UTF-8 or a malformed uuid there is not refused. Complex values (records, arrays, maps,
bytes, fixed, unions other than ``["null", X]``) go through the plain reader's closures.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from typing import Any

from streams._plain_avro import (
    _DOUBLE,
    _FLOAT,
    PlainReadError,
    Read,
    _compile,
    _long,
    _size,
    _uuid,
)

try:  # built by `make install` (infra.build_ext); without it, the generated Python reader
    from streams._compiled import FieldsReader as _Compiled

    FieldsReader: type[_Compiled] | None = _Compiled
except ImportError:  # pragma: no cover - a checkout where the extension was not built
    FieldsReader = None

_SIMPLE = {"null", "boolean", "int", "long", "float", "double", "string"}
#: a step of the compiled reader's plan: (step name, slot of the kept field or -1, argument)
Step = tuple[str, int, Any]
_TIMESTAMPS = {"timestamp-micros", "timestamp-millis", "local-timestamp-micros"}
#: a varint of exactly eight bytes, read as one little-endian 64-bit number: the high bit of
#: each byte (continuation) set in the first seven, clear in the last
_HIGH_BITS = 0x8080808080808080
_EIGHT_BYTES = 0x0080808080808080
_LOW_BITS = 0x7F7F7F7F7F7F7F7F
#: (bits kept in place, bits moved down, by how much): 7-bit groups to 14, 28, then 56 bits
_PACKING = (
    (0x007F007F007F007F, 0x3F803F803F803F80, 1),
    (0x00003FFF00003FFF, 0x0FFFC0000FFFC000, 2),
    (0x000000000FFFFFFF, 0x00FFFFFFF0000000, 4),
)


def fields_reader(schema: Any, fields: Collection[str]) -> Read:
    """A reader of a record schema returning a dict of the ``fields`` it has (others skipped):
    the compiled one (:mod:`streams._compiled`, built by ``make install``) when it is built,
    else the generated Python one (same answers, about three times the CPU)."""
    if FieldsReader is None:
        return generated_fields_reader(schema, fields)
    steps, keys = plan(schema, fields)
    return FieldsReader(steps, keys).read


def plan(schema: Any, fields: Collection[str]) -> tuple[list[Step], list[str]]:
    """The compiled reader's steps for a record schema, one per value in the order of the
    bytes (``(step, slot, argument)``, slot -1 for a value stepped over), and the kept names."""
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
    """Append the steps of one value of ``schema`` (what :func:`_emit` writes as source)."""
    while isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        schema = schema["type"]
    kind, logical = _kind(schema)
    if kind == "int":
        steps.append(("long", slot, None))
    elif kind == "string" and logical == "uuid":
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


def generated_fields_reader(schema: Any, fields: Collection[str]) -> Read:
    """The fields reader as one generated Python function (the compiled reader's reference)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise PlainReadError("a fields reader reads records")
    named: dict[str, Any] = {}
    _compile(schema, named, "")  # every named type, for the fields read by closure
    space = schema.get("namespace", "")
    env: dict[str, Any] = {
        "_long": _long,
        "_size": _size,
        "_uuid": _uuid,
        "_DOUBLE": _DOUBLE,
        "_FLOAT": _FLOAT,
        "_U64": struct.Struct("<Q").unpack_from,
        "_HEX": b"0123456789abcdef",
        "PlainReadError": PlainReadError,
    }
    body: list[str] = []
    kept: list[tuple[str, str]] = []
    for index, field in enumerate(schema["fields"]):
        name = field["name"]
        target = f"v{index}" if name in fields else None
        _emit(field["type"], target, body, env, named, space, "    ", f"f{index}")
        if target is not None:
            kept.append((name, target))
    items = ", ".join(f"{name!r}: {var}" for name, var in kept)
    source = "\n".join(
        [
            "def read(buf, pos):",
            "    blen = len(buf)",  # once: a len() call per check cost about 0.3 us a record
            *body,
            "    if pos > blen:",
            "        raise PlainReadError('the record runs past the end')",
            f"    return {{{items}}}, pos",
        ]
    )
    exec(compile(source, f"<fields reader of {schema.get('name')}>", "exec"), env)
    read: Read = env["read"]
    return read


def _emit(
    schema: Any,
    target: str | None,
    out: list[str],
    env: dict[str, Any],
    named: dict[str, Any],
    space: str,
    pad: str,
    tag: str,
) -> None:
    """Append the lines reading one value of ``schema`` at ``pos`` into ``target`` (None: skip)."""
    while isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        schema = schema["type"]  # {"type": {...}}: a wrapped schema
    kind, logical = _kind(schema)
    sink = f"{target} = " if target is not None else ""
    if kind == "null":
        if target is not None:
            out.append(f"{pad}{target} = None")
    elif kind == "boolean":
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}if b > 1: raise PlainReadError(f'boolean byte {{b}}')")
        if target is not None:
            out.append(f"{pad}{target} = b == 1")
        out.append(f"{pad}pos += 1")
    elif kind in ("int", "long"):
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}if b < 0x80:")
        if target is not None:
            out.append(f"{pad}    {target} = (b >> 1) ^ -(b & 1)")
        out.append(f"{pad}    pos += 1")
        out.append(f"{pad}elif buf[pos + 1] < 0x80:")  # two bytes: counts, tokens, statuses
        if target is not None:
            out.append(f"{pad}    v = (b & 0x7F) | (buf[pos + 1] << 7)")
            out.append(f"{pad}    {target} = (v >> 1) ^ -(v & 1)")
        out.append(f"{pad}    pos += 2")
        if logical in _TIMESTAMPS:
            # eight bytes (a timestamp of these decades in microseconds): the 7-bit groups
            # of one little-endian 64-bit read, packed by masks (a loop costs 8 rounds)
            out.append(f"{pad}elif pos + 8 <= blen and (")
            out.append(f"{pad}    x := _U64(buf, pos)[0]) & {_HIGH_BITS:#x} == {_EIGHT_BYTES:#x}:")
            if target is not None:
                out.append(f"{pad}    x &= {_LOW_BITS:#x}")
                for keep, moved, shift in _PACKING:
                    out.append(f"{pad}    x = (x & {keep:#x}) | ((x >> {shift}) & {moved:#x})")
                out.append(f"{pad}    {target} = (x >> 1) ^ -(x & 1)")
            out.append(f"{pad}    pos += 8")
        out.append(f"{pad}else:")  # _long's loop, inline
        out.append(f"{pad}    v = b & 0x7F")
        out.append(f"{pad}    shift = 7")
        out.append(f"{pad}    pos += 1")
        out.append(f"{pad}    while True:")
        out.append(f"{pad}        b = buf[pos]")
        out.append(f"{pad}        pos += 1")
        out.append(f"{pad}        v |= (b & 0x7F) << shift")
        out.append(f"{pad}        if b < 0x80: break")
        out.append(f"{pad}        shift += 7")
        out.append(
            f"{pad}        if shift > 63: raise PlainReadError('varint longer than 10 bytes')"
        )
        out.append(f"{pad}    if v >> 64: raise PlainReadError('varint beyond 64 bits')")
        if target is not None:
            out.append(f"{pad}    {target} = (v >> 1) ^ -(v & 1)")
    elif kind in ("double", "float"):
        size, unpack = (8, "_DOUBLE") if kind == "double" else (4, "_FLOAT")
        if target is not None:
            out.append(f"{pad}{target} = {unpack}(buf, pos)[0]")
        else:
            out.append(f"{pad}if pos + {size} > blen: raise PlainReadError('number past the end')")
        out.append(f"{pad}pos += {size}")
    elif kind == "string" and target is None:
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}if b < 0x80 and not b & 1:")
        out.append(f"{pad}    pos += 1 + (b >> 1)")
        out.append(f"{pad}else:")
        out.append(f"{pad}    size, pos = _size(buf, pos)")
        out.append(f"{pad}    pos += size")
    elif kind == "string" and logical == "uuid":  # as the plain reader: normalised or refused
        out.append(f"{pad}if buf[pos] == 72:")  # 36 characters, the canonical length: inline
        out.append(f"{pad}    end = pos + 37")
        out.append(f"{pad}    if end > blen: raise PlainReadError('uuid past the end')")
        # canonical (what _CANONICAL_UUID matches): 32 lower-case hex digits and the four
        # dashes where they belong, checked on the bytes; anything else as the plain reader
        out.append(f"{pad}    raw = buf[pos + 1 : end]")
        out.append(
            f"{pad}    if raw.translate(None, _HEX) == b'----' and raw[8] == raw[13] =="
            " raw[18] == raw[23] == 45:"
        )
        out.append(f"{pad}        {target} = raw.decode()")
        out.append(f"{pad}    else:")
        out.append(f"{pad}        {target}, _ = _uuid(buf, pos)")
        out.append(f"{pad}    pos = end")
        out.append(f"{pad}else:")
        out.append(f"{pad}    {target}, pos = _uuid(buf, pos)")
    elif kind == "string":
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}if b < 0x80 and not b & 1:")
        out.append(f"{pad}    end = pos + 1 + (b >> 1)")
        out.append(f"{pad}    if end > blen: raise PlainReadError('string past the end')")
        out.append(f"{pad}    {target} = buf[pos + 1 : end].decode()")
        out.append(f"{pad}    pos = end")
        out.append(f"{pad}else:")
        out.append(f"{pad}    size, pos = _size(buf, pos)")
        out.append(f"{pad}    {target} = buf[pos : pos + size].decode()")
        out.append(f"{pad}    pos += size")
    elif kind == "enum":
        symbols = tuple(schema["symbols"])
        env[f"symbols_{tag}"] = symbols
        out.append(f"{pad}i, pos = _long(buf, pos)")
        out.append(f"{pad}if not 0 <= i < {len(symbols)}:")
        out.append(f"{pad}    raise PlainReadError(f'enum symbol {{i}} of {len(symbols)}')")
        if target is not None:
            out.append(f"{pad}{target} = symbols_{tag}[i]")
    elif kind == "optional":
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}pos += 1")
        out.append(f"{pad}if b == 0:")
        out.append(f"{pad}    {sink}None" if target is not None else f"{pad}    pass")
        out.append(f"{pad}elif b == 2:")
        _emit(schema[1], target, out, env, named, space, pad + "    ", tag + "_1")
        out.append(f"{pad}else:")
        out.append(f"{pad}    raise PlainReadError(f'union branch byte {{b}} of 2 branches')")
    else:
        _by_closure(schema, target, out, env, named, space, pad, tag)


def _by_closure(
    schema: Any,
    target: str | None,
    out: list[str],
    env: dict[str, Any],
    named: dict[str, Any],
    space: str,
    pad: str,
    tag: str,
) -> None:
    env[f"read_{tag}"] = _compile(schema, named, space)[0]
    out.append(f"{pad}{target or '_'}, pos = read_{tag}(buf, pos)")


def _kind(schema: Any) -> tuple[str, str | None]:
    """The shape the generator handles inline, or ``"other"``; and the logical type."""
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
