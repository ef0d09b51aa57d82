"""Schema identity and the pre-parse checks of the registry, as pure functions."""

from __future__ import annotations

import json

import pytest

from infra.registry.identity import (
    InvalidDefaultError,
    SchemaShapeError,
    check_defaults,
    check_shape,
    identity,
)

INNER = {"type": "enum", "name": "Colour", "namespace": "io.t", "symbols": ["RED"]}
OUTER = {
    "type": "record",
    "name": "Thing",
    "namespace": "io.t",
    "doc": "d",
    "fields": [
        {"name": "c", "type": INNER, "default": "RED"},
        {"name": "again", "type": "io.t.Colour", "default": "RED"},
        {"name": "s", "type": {"type": "string"}},
    ],
}


def test_spelling_does_not_change_identity() -> None:
    java = json.loads(json.dumps(OUTER))
    del java["fields"][0]["type"]["namespace"]  # as Java Avro prints a nested type
    java["fields"][1]["type"] = "Colour"  # and a reference in the same namespace
    java["fields"][2]["type"] = "string"
    reordered = {k: OUTER[k] for k in reversed(list(OUTER))}
    ours = identity(json.dumps(OUTER))
    assert identity(json.dumps(java)) == ours
    assert identity(json.dumps(reordered, indent=2)) == ours


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["fields"][0].update(default="BLUE"),  # defaults matter
        lambda s: s.update(doc="other"),  # docs matter
        lambda s: s["fields"][2].update(aliases=["t"]),  # aliases matter
        lambda s: s.update(namespace="io.u"),  # the full name matters
    ],
)
def test_meaningful_differences_change_identity(change: object) -> None:
    other = json.loads(json.dumps(OUTER))
    change(other)  # type: ignore[operator]
    assert identity(json.dumps(other)) != identity(json.dumps(OUTER))


def test_defaults_are_checked_against_their_types() -> None:
    check_defaults(json.dumps(OUTER))
    bad = json.loads(json.dumps(OUTER))
    bad["fields"][1]["default"] = "GREEN"
    with pytest.raises(InvalidDefaultError, match=r"io\.t\.Thing\.again"):
        check_defaults(json.dumps(bad))


def test_too_many_fields_are_refused_before_the_avro_parse() -> None:
    fields = [{"name": f"f{i}", "type": "int"} for i in range(2_001)]
    with pytest.raises(SchemaShapeError, match="more than 2000 fields"):
        check_defaults(json.dumps({"type": "record", "name": "Wide", "fields": fields}))


def test_depth_is_checked_without_parsing() -> None:
    check_shape('{"a": "[[[[[[[[[["}', max_depth=2)  # brackets in strings do not count
    with pytest.raises(SchemaShapeError):
        check_shape("[" * 10_000 + "]" * 10_000)
