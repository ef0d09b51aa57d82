"""A reader of Avro binary into plain data (no logical types), built once per schema.

Why not fastavro here: its reader walks the schema for every value (a dict lookup and a call per
field), which costs more than the rest of a projection's per-record work put together. This one
turns the schema into a tree of small closures once, so a record costs one call per field. It
serves :meth:`streams.codec.Codec.decode_plain` when the writer schema is the reader's own (any
other schema id resolves through fastavro), and it reads hostile bytes safely: every length is
checked against the buffer, and counts are bounded by the bytes left, so bad input ends in
:class:`PlainReadError`, never in a hang or a huge allocation. A test holds it equal to fastavro.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any
from uuid import UUID

#: ``read(buffer, position) -> (value, next position)``
Read = Callable[[bytes, int], tuple[Any, int]]

_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from
#: a count of zero-byte items (nulls, empty records) beyond this is taken as corrupt
_MAX_EMPTY_ITEMS = 65_536


class PlainReadError(ValueError):
    """The bytes are not a value of the schema."""


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:  # one byte: -64..63, most counts, lengths and small numbers
        return (byte >> 1) ^ -(byte & 1), pos + 1
    pos += 1
    result = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise PlainReadError("varint longer than 10 bytes")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
    if result >> 64:
        raise PlainReadError("varint beyond 64 bits")
    return (result >> 1) ^ -(result & 1), pos


def _size(buf: bytes, pos: int) -> tuple[int, int]:
    size, pos = _long(buf, pos)
    if size < 0 or pos + size > len(buf):
        raise PlainReadError(f"length {size} at byte {pos} runs past the end")
    return size, pos


def _null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    byte = buf[pos]
    if byte > 1:
        raise PlainReadError(f"boolean byte {byte}")
    return byte == 1, pos + 1


def _double(buf: bytes, pos: int) -> tuple[float, int]:
    return _DOUBLE(buf, pos)[0], pos + 8


def _float(buf: bytes, pos: int) -> tuple[float, int]:
    return _FLOAT(buf, pos)[0], pos + 4


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _size(buf, pos)
    return buf[pos : pos + size], pos + size


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    size = buf[pos]
    if size < 0x80 and not size & 1:  # a length under 64 in one byte: most strings
        end = pos + 1 + (size >> 1)
        if end > len(buf):
            raise PlainReadError(f"string at byte {pos} runs past the end")
        return buf[pos + 1 : end].decode(), end
    size, pos = _size(buf, pos)
    return buf[pos : pos + size].decode(), pos + size


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(buf: bytes, pos: int) -> tuple[str, int]:
    """A uuid string as the full decoder reads it: canonical (lower case, dashed); another
    spelling UUID() takes (upper case, braces, spaces) is normalised, anything else refused."""
    text, end = _string(buf, pos)
    if _CANONICAL_UUID.fullmatch(text) is None:
        try:
            text = str(UUID(text))
        except ValueError as exc:
            raise PlainReadError(f"not a UUID: {text[:40]!r}") from exc
    return text, end


_PRIMITIVES: dict[str, tuple[Read, int]] = {  # reader, fewest bytes a value takes
    "null": (_null, 0),
    "boolean": (_boolean, 1),
    "int": (_long, 1),
    "long": (_long, 1),
    "float": (_float, 4),
    "double": (_double, 8),
    "bytes": (_bytes, 1),
    "string": (_string, 1),
}


def plain_reader(schema: Any) -> Read:
    """The reader of values of ``schema`` (Avro JSON data; named types are defined inline)."""
    return _compile(schema, {}, "")[0]


def _compile(schema: Any, named: dict[str, tuple[Read, int]], space: str) -> tuple[Read, int]:
    if isinstance(schema, str):
        found = _PRIMITIVES.get(schema) or named.get(schema) or named.get(f"{space}.{schema}")
        if found is None:
            raise PlainReadError(f"unknown type {schema!r}")
        return found
    if isinstance(schema, list):
        return _union([_compile(branch, named, space) for branch in schema])
    kind = schema["type"]
    if not isinstance(kind, str):  # {"type": {...}}: a wrapped schema
        return _compile(kind, named, space)
    if kind == "string" and schema.get("logicalType") == "uuid":
        return (_uuid, 1)
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "array":
        return _blocks(_compile(schema["items"], named, space), None)
    if kind == "map":
        return _blocks(_compile(schema["values"], named, space), _string)
    name = schema["name"]
    space = schema.get("namespace", space) if "." not in name else name.rsplit(".", 1)[0]
    fullname = name if "." in name else f"{space}.{name}" if space else name
    if kind == "enum":
        named[fullname] = _enum(tuple(schema["symbols"]))
    elif kind == "fixed":
        named[fullname] = _fixed(int(schema["size"]))
    elif kind == "record":
        fields = [(f["name"], _compile(f["type"], named, space)) for f in schema["fields"]]
        named[fullname] = _record(fields)
    else:
        raise PlainReadError(f"unknown type {kind!r}")
    return named[fullname]


def _union(branches: list[tuple[Read, int]]) -> tuple[Read, int]:
    readers = [read for read, _ in branches]
    if len(readers) == 2 and readers[0] is _null:  # ["null", X]: nearly every union
        value = readers[1]

        def optional(buf: bytes, pos: int) -> tuple[Any, int]:
            branch = buf[pos]
            if branch == 0:
                return None, pos + 1
            if branch == 2:  # zigzag of 1
                return value(buf, pos + 1)
            raise PlainReadError(f"union branch byte {branch} of 2 branches")

        return optional, 1

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        index, pos = _long(buf, pos)
        if not 0 <= index < len(readers):
            raise PlainReadError(f"union branch {index} of {len(readers)}")
        return readers[index](buf, pos)

    return read, 1


def _enum(symbols: tuple[str, ...]) -> tuple[Read, int]:
    def read(buf: bytes, pos: int) -> tuple[str, int]:
        index, pos = _long(buf, pos)
        if not 0 <= index < len(symbols):
            raise PlainReadError(f"enum symbol {index} of {len(symbols)}")
        return symbols[index], pos

    return read, 1


def _fixed(size: int) -> tuple[Read, int]:
    def read(buf: bytes, pos: int) -> tuple[bytes, int]:
        if pos + size > len(buf):
            raise PlainReadError(f"fixed of {size} bytes runs past the end")
        return buf[pos : pos + size], pos + size

    return read, size


def _record(fields: list[tuple[str, tuple[Read, int]]]) -> tuple[Read, int]:
    steps = [(name, read) for name, (read, _) in fields]

    def read(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out = {}
        for name, step in steps:
            out[name], pos = step(buf, pos)
        return out, pos

    return read, sum(least for _, (_, least) in fields)


def _blocks(item: tuple[Read, int], key: Read | None) -> tuple[Read, int]:
    """Arrays (``key`` None) and maps: blocks of ``count`` items until a zero count."""
    read_item, least = item
    least += 0 if key is None else 1

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        items: list[Any] = []
        pairs: dict[str, Any] = {}
        while True:
            count, pos = _long(buf, pos)
            if count == 0:
                return (items if key is None else pairs), pos
            if count < 0:
                count = -count
                _, pos = _long(buf, pos)  # the block's size in bytes
            room = (len(buf) - pos) // least if least else _MAX_EMPTY_ITEMS
            if count > room:
                raise PlainReadError(f"block of {count} items cannot fit the bytes left")
            for _ in range(count):
                if key is None:
                    value, pos = read_item(buf, pos)
                    items.append(value)
                else:
                    name, pos = key(buf, pos)
                    pairs[name], pos = read_item(buf, pos)

    return read, 1
