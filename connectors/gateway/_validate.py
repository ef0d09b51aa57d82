"""Edge validation shared by every gateway route: bounded JSON, strict models, Avro-safe values.

Checks that must run *before* a parser sees the bytes (nesting depth: Python's ``json`` and the
worker's payload parsing raise ``RecursionError`` on deep input) and checks that pydantic's field
types cannot express (integers beyond Avro's ``long``, call fields the worker would trip over).
Each returns problems in the client-facing shape ``{"field", "message", "type"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streams.events.calls import CallRequested
from streams.topics import Catalogue

#: Deepest JSON nesting accepted in a body, and inside a call's ``payload`` text.
MAX_DEPTH = 32
#: At most this many problems are listed in one answer; the rest are counted.
MAX_PROBLEMS = 20
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

Problem = dict[str, str]
Model = TypeVar("Model", bound=BaseModel)

# a whole JSON string (skipped: brackets inside strings do not nest), or one bracket
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# An integer beyond Avro's long has at least 19 digits; an integral float that
# :func:`validate_strict` reads as one has them too, or an exponent. A JSON number starts after
# ``:``, ``[`` or ``,`` (and whitespace): "1e5" inside a string (a hex id) is not one.
_EXPONENT = re.compile(rb"[:\[,]\s*-?\d+(?:\.\d+)?[eE]")
# The text with every digit read as 0, "," and "[" as ":" (what a number may follow), and
# whitespace and minus signs dropped: a few substring tests on it rule out what the regex would
# look for, at a fifth of the regex's cost.
_MARKED = bytes.maketrans(b"123456789,[", b"000000000::")
_DROPPED = b" \t\n\r\x0b\x0c-"  # what ``\s`` matches, and the sign
_NINETEEN_DIGITS = b"0" * 19


def too_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON text nests arrays/objects deeper than ``limit``; never parses it."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot nest deeper than it has openers: the common case, no scan
    depth = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if len(token) != 1:
            continue
        if token[0] in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _integral_float_error(err: Any) -> bool:
    value = err.get("input")
    return err["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def validate_strict(model: type[Model], raw: bytes | str) -> Model:
    """``model`` from JSON text in pydantic's strict mode: no ``"3"`` or ``true`` for a number,
    no ``0`` for a date-time. An integral number written with a fraction or exponent (``3.0``,
    ``1e3``) is still an integer, as JSON Schema defines it. Call :func:`too_deep` first."""
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if not errors or not all(_integral_float_error(e) for e in errors):
            raise
    # rare: re-read with integral floats as integers (the depth was bounded by the caller)
    normal = json.dumps(json.loads(raw, parse_float=_number), allow_nan=False)
    return model.model_validate_json(normal, strict=True)


def depth_problem(limit: int = MAX_DEPTH, field: str = "(body)") -> Problem:
    return {
        "field": field,
        "message": f"JSON nested deeper than {limit} levels",
        "type": "too_deep",
    }


def field_problems(exc: ValidationError) -> list[Problem]:
    """Pydantic's errors in the client-facing shape (all of them; :func:`capped` trims)."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def capped(problems: list[Problem], limit: int = MAX_PROBLEMS) -> dict[str, Any]:
    """``{"fields": first limit, "more_fields": how many were left out}`` (the latter only if any)."""
    out: dict[str, Any] = {"fields": problems[:limit]}
    if len(problems) > limit:
        out["more_fields"] = len(problems) - limit
    return out


def _ints(value: Any, path: str) -> Iterator[tuple[str, int]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _ints(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _ints(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _ints(item, f"{path}.{index}" if path else str(index))


def may_exceed_long(raw: bytes | str) -> bool:
    """False when the JSON text cannot hold an integer beyond Avro's ``long``: then
    :func:`long_problems` has nothing to find and the walk over the model is skipped."""
    data = raw.encode() if isinstance(raw, str) else raw
    marked = data.translate(_MARKED, _DROPPED)
    if _NINETEEN_DIGITS in marked:  # 19 digits in a row (dropping a "-" may join two runs)
        return True
    if b":0" not in marked:
        return False  # no JSON number at all (the common case: ids and names are strings)
    if b"0e" not in marked and b"0E" not in marked:
        return False  # an exponent follows a digit directly, wherever it is
    return _EXPONENT.search(data) is not None


def long_problems(model: BaseModel) -> list[Problem]:
    """Integers Avro cannot carry (every integer field is an Avro ``long``: 64-bit signed)."""
    return [
        {
            "field": path,
            "message": f"integer out of range: must be between {LONG_MIN} and {LONG_MAX}",
            "type": "int_out_of_range",
        }
        for path, number in _ints(model, "")
        if not LONG_MIN <= number <= LONG_MAX
    ]


def header_safe(text: str) -> bool:
    """No control characters (CR/LF would split an HTTP header the worker sends it in)."""
    return _CONTROL.search(text) is None


def reply_topics(catalogue: Catalogue) -> list[str]:
    """Logical topics a call may name as ``reply_to``: those declared to carry call outcomes."""
    return [spec.name for spec in catalogue if "call.succeeded" in spec.value_types]


def call_problems(call: CallRequested, catalogue: Catalogue) -> list[Problem]:
    """What the worker could not handle in a call request, found before it is accepted."""
    problems: list[Problem] = []
    # the event model cannot carry these bounds (Avro has no value constraints): checked here
    for name, low in (("attempt", 0), ("max_attempts", 1), ("timeout_ms", 1)):
        value = getattr(call, name)
        if value is not None and value < low:
            problems.append(
                {"field": name, "message": f"must be >= {low}", "type": "greater_than_equal"}
            )
    if too_deep(call.payload):
        problems.append(depth_problem(MAX_DEPTH, "payload"))
    if not header_safe(call.idempotency_key):
        problems.append(
            {
                "field": "idempotency_key",
                "message": "must not contain control characters (CR, LF, ...)",
                "type": "header_unsafe",
            }
        )
    if call.reply_to is not None:  # the catalogue is scanned only for a call that names one
        allowed = reply_topics(catalogue)
        if call.reply_to not in allowed:
            problems.append(
                {
                    "field": "reply_to",
                    "message": f"must be one of {allowed} (catalogue topics that carry call "
                    "outcomes)",
                    "type": "unknown_topic",
                }
            )
    return problems
