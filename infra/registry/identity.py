"""What makes two schema texts the same schema, and the checks a text passes before it is parsed.

Confluent parses a schema before comparing it, so key order, whitespace and a nested named type's
redundant ``namespace`` (Java Avro's ``Schema.toString()`` drops it when it equals the enclosing
one) do not make a new schema. Avro's Parsing Canonical Form would also drop defaults, docs and
aliases, which matter for compatibility; :func:`identity` keeps them (and every other property).

:func:`check_shape` bounds the nesting depth and size of JSON *before* it is parsed (Python's
parser recurses: 10,000 levels are a ``RecursionError``). :func:`check_defaults` refuses a field
default that does not match the field's type, as Java Avro (and so Confluent) does.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from infra.errors import InfraError

#: Deeper than any real schema (ours nest to about 10), far below Python's recursion limit.
MAX_DEPTH = 100
#: Fields in one schema, all records together. Apache avro's parser is quadratic in them (2,000
#: take about 0.7 s on the reference machine, 37,000 over two minutes), and the registry parses
#: on its event loop; ours have under 50.
MAX_FIELDS = 2_000

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_INT = (-(2**31), 2**31 - 1)
_LONG = (-(2**63), 2**63 - 1)


class SchemaShapeError(InfraError):
    """JSON nested too deep, or a schema with too many fields (refused before the Avro parse)."""

    code = "schema_shape"


class InvalidDefaultError(InfraError):
    """A field default that its type cannot hold."""

    code = "invalid_default"


def check_shape(text: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` without parsing it."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise SchemaShapeError(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1


@functools.lru_cache(maxsize=4096)
def identity(text: str) -> str:
    """The schema's identity: named types by full name, no namespace keys, keys sorted."""
    return json.dumps(_Walk().schema(json.loads(text), ""), sort_keys=True, separators=(",", ":"))


def check_defaults(text: str) -> None:
    """Raise :class:`InvalidDefaultError` naming the first field whose default its type refuses."""
    walk = _Walk()
    walk.schema(json.loads(text), "")
    for where, value, schema in walk.defaults:
        if not _valid(value, schema, walk.named):
            raise InvalidDefaultError(
                f"Invalid default for field {where}: {json.dumps(value)[:100]} not a "
                f"{json.dumps(schema, sort_keys=True)[:200]}"
            )


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


@dataclass
class _Walk:
    named: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: list[tuple[str, Any, Any]] = field(default_factory=list)
    fields: int = 0

    def schema(self, node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            return node if node in PRIMITIVES else _full(node, namespace)
        if isinstance(node, list):
            return [self.schema(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            return node  # not a schema: the Avro parser says why
        kind = node.get("type")
        if kind in NAMED and isinstance(node.get("name"), str):
            return self._named(node, namespace)
        out = dict(node)
        if kind == "array" and "items" in node:
            out["items"] = self.schema(node["items"], namespace)
        elif kind == "map" and "values" in node:
            out["values"] = self.schema(node["values"], namespace)
        elif isinstance(kind, (dict, list)):
            out["type"] = self.schema(kind, namespace)
        elif isinstance(kind, str) and len(node) == 1:
            return self.schema(kind, namespace)  # {"type": "string"} is "string"
        return out

    def _named(self, node: dict[str, Any], enclosing: str) -> dict[str, Any]:
        own = node.get("namespace")
        namespace = own if isinstance(own, str) else enclosing
        full = _full(str(node["name"]), namespace)
        inner = full.rpartition(".")[0]
        out = {k: v for k, v in node.items() if k != "namespace"}
        out["name"] = full
        if isinstance(node.get("aliases"), list):
            out["aliases"] = [_full(str(a), inner) for a in node["aliases"]]
        self.named[full] = out
        if isinstance(node.get("fields"), list):
            out["fields"] = [self._field(f, inner, full) for f in node["fields"]]
        return out

    def _field(self, node: Any, namespace: str, record: str) -> Any:
        self.fields += 1
        if self.fields > MAX_FIELDS:
            raise SchemaShapeError(f"more than {MAX_FIELDS} fields")
        if not isinstance(node, dict):
            return node
        out = dict(node)
        if "type" in node:
            out["type"] = self.schema(node["type"], namespace)
            if "default" in node:
                self.defaults.append((f"{record}.{node.get('name')}", node["default"], out["type"]))
        return out


def _valid(value: Any, schema: Any, named: dict[str, dict[str, Any]], depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return True  # a recursive type's default this deep: leave it to the parser
    if isinstance(schema, list):
        return any(_valid(value, branch, named, depth + 1) for branch in schema)
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return _primitive(value, schema)
        return schema not in named or _valid(value, named[schema], named, depth + 1)
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind in ("record", "error"):
        fields = schema.get("fields")
        return isinstance(value, dict) and all(
            _valid(value[f["name"]], f.get("type"), named, depth + 1)
            if f.get("name") in value
            else "default" in f
            for f in fields or ()
            if isinstance(f, dict)
        )
    if kind == "enum":
        return isinstance(value, str) and value in (schema.get("symbols") or ())
    if kind == "fixed":
        return isinstance(value, str)
    if kind == "array":
        items = schema.get("items")
        return isinstance(value, list) and all(_valid(v, items, named, depth + 1) for v in value)
    if kind == "map":
        values = schema.get("values")
        return isinstance(value, dict) and all(
            _valid(v, values, named, depth + 1) for v in value.values()
        )
    return _valid(value, kind, named, depth + 1)


def _primitive(value: Any, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    match kind:
        case "null":
            return value is None
        case "boolean":
            return isinstance(value, bool)
        case "int" | "long":
            low, high = _INT if kind == "int" else _LONG
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        case "float" | "double":
            return number
        case _:  # bytes, string
            return isinstance(value, str)
