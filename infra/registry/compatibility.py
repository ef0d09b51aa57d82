"""Schema compatibility, Confluent's levels on top of Apache avro's reader/writer checker.

Used by the registry server (registration, ``/compatibility``) and by ``backbone schemas check``
(the evolution gate), so both apply exactly the same rules. For records, every top-level field is
checked on its own so a report names the field and the rule that breaks, e.g.::

    CallRequested.priority: READER_FIELD_MISSING_DEFAULT_VALUE (new schema reading old data) ...
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import StrEnum

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
)

from infra.errors import InfraError


class InvalidAvroSchema(InfraError):  # noqa: N818 - mirrors Confluent's "invalid schema"
    code = "invalid_schema"


class Level(StrEnum):
    """Confluent compatibility levels."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """New schemas must read data written with old ones."""
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old schemas must read data written with new ones."""
        return self.startswith(("FORWARD", "FULL"))


#: The registry's default for subjects without their own level (as Confluent's BACKWARD, transitive).
DEFAULT_LEVEL = Level.BACKWARD_TRANSITIVE
#: The evolution gate's policy: during a rolling deploy old and new consumers read each other's
#: records, and partners may read with a pinned schema, so both directions must hold, against
#: every released version.
GATE_LEVEL = Level.FULL_TRANSITIVE

BACKWARD = "new schema reads old data"
FORWARD = "old schema reads new data"


@dataclass(frozen=True)
class Incompatibility:
    """One broken rule: which field, which rule, in which direction, against which version."""

    rule: str  # READER_FIELD_MISSING_DEFAULT_VALUE, TYPE_MISMATCH, ...
    field: str  # dotted path below the record (`priority`), or the record itself
    location: str  # JSON pointer in the reader schema, as Apache avro reports it
    message: str
    direction: str  # "new reads old" (backward) or "old reads new" (forward)
    against: str = ""  # e.g. "version 3"

    def __str__(self) -> str:
        where = f" against {self.against}" if self.against else ""
        return f"{self.field}: {self.rule} ({self.direction}{where}) at {self.location}: {self.message}"


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> avro.schema.Schema:
    """Parse and validate a schema (raises :class:`InvalidAvroSchema`); cached: the registry
    checks each new schema against every stored version, and stored versions never change."""
    try:
        return avro.schema.parse(text)
    except (avro.errors.AvroException, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidAvroSchema(f"invalid Avro schema: {exc}") from exc


def _results(
    reader: avro.schema.Schema, writer: avro.schema.Schema, prefix: str, direction: str
) -> list[Incompatibility]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    rules = sorted({i.value.upper() for i in result.incompatibilities})
    return [
        Incompatibility(
            rule=", ".join(rules),
            field=prefix,
            location=", ".join(sorted(result.locations)),
            message="; ".join(sorted(result.messages)),
            direction=direction,
        )
    ]


def reader_writer(
    reader: avro.schema.Schema, writer: avro.schema.Schema, direction: str
) -> list[Incompatibility]:
    """Why ``reader`` cannot read data written with ``writer`` (empty list: it can)."""
    if not (
        isinstance(reader, avro.schema.RecordSchema)
        and isinstance(writer, avro.schema.RecordSchema)
    ):
        return _results(reader, writer, "(schema)", direction)
    name = reader.name
    found: list[Incompatibility] = []
    aliases = reader.props.get("aliases")
    renamed = isinstance(aliases, list) and writer.fullname in aliases
    if reader.name != writer.name and not renamed:
        found.append(
            Incompatibility(
                "NAME_MISMATCH", name, "/name", f"expected {writer.fullname}", direction
            )
        )
    writer_fields = writer.fields_dict
    for index, field in enumerate(reader.fields):
        match = writer_fields.get(field.name)
        field_aliases = field.props.get("aliases")
        for alias in field_aliases if isinstance(field_aliases, list) else ():
            match = match or writer_fields.get(alias)
        if match is None:
            if not field.has_default:
                change = "removed" if direction == FORWARD else "added"
                found.append(
                    Incompatibility(
                        "READER_FIELD_MISSING_DEFAULT_VALUE",
                        f"{name}.{field.name}",
                        f"/fields/{index}",
                        f"field {field.name!r} was {change} without a default: the reader needs "
                        "it and the writer does not write it (give it a default first)",
                        direction,
                    )
                )
            continue
        for problem in _results(field.type, match.type, f"{name}.{field.name}", direction):
            found.append(
                Incompatibility(
                    problem.rule,
                    problem.field,
                    f"/fields/{index}/type",
                    f"{problem.message} (at {problem.location} in the field's type)",
                    direction,
                )
            )
    return found


def check(
    new: avro.schema.Schema,
    existing: list[tuple[str, avro.schema.Schema]],
    level: Level,
) -> list[Incompatibility]:
    """Incompatibilities of ``new`` with ``existing`` (label, schema) versions, oldest first."""
    if level is Level.NONE or not existing:
        return []
    against = existing if level.transitive else existing[-1:]
    found: list[Incompatibility] = []
    for label, old in against:
        pairs = []
        if level.backward:
            pairs.append((new, old, BACKWARD))
        if level.forward:
            pairs.append((old, new, FORWARD))
        for reader, writer, direction in pairs:
            for problem in reader_writer(reader, writer, direction):
                found.append(
                    Incompatibility(
                        problem.rule,
                        problem.field,
                        problem.location,
                        problem.message,
                        problem.direction,
                        label,
                    )
                )
    return found
