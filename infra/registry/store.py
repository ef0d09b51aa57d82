"""The registry's state, rebuilt by replaying its log (the compacted ``_schemas`` topic).

The record layout follows Confluent's so the topic reads familiarly to anyone who knows it::

    key   {"keytype":"SCHEMA","subject":S,"version":V,"magic":1}
    value {"subject":S,"version":V,"id":N,"schema":TEXT,"deleted":false}   (null: hard-deleted)
    key   {"keytype":"CONFIG","subject":S|null,"magic":0}
    value {"compatibilityLevel":LEVEL}                                     (null: reset)

Ids are global per schema text: the same schema under two subjects has one id, which is what
makes ids stable across restarts (replaying the log gives back every id as it was written).
This module is pure: it neither reads nor writes Kafka.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from infra.registry.compatibility import DEFAULT_LEVEL, Level
from infra.registry.identity import identity


def canonical(text: str) -> str:
    """The stored form of a schema text: compact JSON, key order kept (as our client sends it);
    two texts are the same schema when their :func:`~infra.registry.identity.identity` is."""
    return json.dumps(json.loads(text), separators=(",", ":"))


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    id: int
    schema: str
    deleted: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.id,
            "schema": self.schema,
        }


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def schema_value(v: Version) -> dict[str, Any]:
    return v.body() | {"deleted": v.deleted}


def config_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}


@dataclass
class RegistryState:
    default_level: Level = DEFAULT_LEVEL
    subjects: dict[str, dict[int, Version]] = field(default_factory=dict)
    schemas: dict[int, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)  # identity -> id
    levels: dict[str | None, Level] = field(default_factory=dict)
    max_id: int = 0

    # --- replay --------------------------------------------------------------------------------

    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        """Apply one log record (unknown key types, e.g. Confluent's NOOP, are ignored)."""
        keytype = key.get("keytype")
        if keytype == "SCHEMA":
            subject, number = str(key["subject"]), int(key["version"])
            versions = self.subjects.setdefault(subject, {})
            if value is None:
                versions.pop(number, None)
                return
            v = Version(
                subject,
                number,
                int(value["id"]),
                str(value["schema"]),
                bool(value.get("deleted", False)),
            )
            versions[number] = v
            self.schemas.setdefault(v.id, v.schema)
            self.ids.setdefault(identity(v.schema), v.id)
            self.max_id = max(self.max_id, v.id)
        elif keytype == "CONFIG":
            scope = None if key.get("subject") is None else str(key["subject"])
            if value is None:
                self.levels.pop(scope, None)
            else:
                self.levels[scope] = Level(value["compatibilityLevel"])

    # --- queries -------------------------------------------------------------------------------

    def level(self, subject: str | None = None) -> Level:
        if subject is not None and subject in self.levels:
            return self.levels[subject]
        return self.levels.get(None, self.default_level)

    def live(self, subject: str) -> list[Version]:
        """Versions not soft-deleted, oldest first."""
        return sorted(
            (v for v in self.subjects.get(subject, {}).values() if not v.deleted),
            key=lambda v: v.version,
        )

    def all_versions(self, subject: str) -> list[Version]:
        return sorted(self.subjects.get(subject, {}).values(), key=lambda v: v.version)

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        return sorted(
            name
            for name in self.subjects
            if (self.all_versions(name) if deleted else self.live(name))
        )

    def find(self, subject: str, text: str) -> Version | None:
        """The live version of ``subject`` holding this schema, if any."""
        wanted = identity(text)
        for v in self.live(subject):
            if identity(v.schema) == wanted:
                return v
        return None

    def id_for(self, text: str) -> int:
        """The id this schema has or would get."""
        return self.ids.get(identity(text), self.max_id + 1)

    def next_version(self, subject: str) -> int:
        versions = self.subjects.get(subject, {})
        return max(versions, default=0) + 1

    def usages(self, schema_id: int) -> list[Version]:
        return [
            v
            for versions in self.subjects.values()
            for v in versions.values()
            if v.id == schema_id and not v.deleted
        ]
