"""The registry's operations, independent of HTTP: validate, check compatibility, log, apply.

Every write goes to the log first and is applied to the in-memory state only once the cluster
acknowledged it, under one lock: the single writer orders ids and versions itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from infra.errors import InfraError
from infra.registry.compatibility import (
    Incompatibility,
    InvalidAvroSchema,
    Level,
    check,
    parse,
)
from infra.registry.identity import (
    InvalidDefaultError,
    SchemaShapeError,
    check_defaults,
    check_shape,
)
from infra.registry.log import MAX_RECORD_BYTES, KafkaLog, encoded_size
from infra.registry.store import (
    RegistryState,
    Version,
    canonical,
    config_key,
    schema_key,
    schema_value,
)


class ApiError(InfraError):
    """A Confluent-style error: HTTP status and ``error_code``."""

    code = "registry_api_error"

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> ApiError:
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: object) -> ApiError:
    return ApiError(404, 40402, f"Version {version} not found.")


def schema_not_found() -> ApiError:
    return ApiError(404, 40403, "Schema not found")


def _confluent_message(problem: Incompatibility) -> str:
    return (
        f"{{errorType:'{problem.rule}', description:'{problem}', additionalInfo:'{problem.field}'}}"
    )


class Registry:
    def __init__(self, log: KafkaLog, default_level: Level) -> None:
        self.log = log
        self.state = RegistryState(default_level=default_level)
        self._lock = asyncio.Lock()

    async def start(self) -> int:
        return await self.log.start(self.state.apply)

    async def stop(self) -> None:
        await self.log.stop()

    # --- reads ---------------------------------------------------------------------------------

    def schema(self, schema_id: int) -> str:
        if schema_id not in self.state.schemas:
            raise schema_not_found()
        return self.state.schemas[schema_id]

    def versions(self, subject: str, *, deleted: bool = False) -> list[Version]:
        found = self.state.all_versions(subject) if deleted else self.state.live(subject)
        if not found:
            raise subject_not_found(subject)
        return found

    def version(self, subject: str, version: str, *, deleted: bool = False) -> Version:
        found = self.versions(subject, deleted=deleted)
        if version in ("latest", "-1"):
            return found[-1]
        try:
            number = int(version)
        except ValueError:
            raise ApiError(
                422, 42202, f"The specified version '{version}' is not a valid version id."
            ) from None
        if number < 1:
            raise ApiError(
                422, 42202, f"The specified version '{version}' is not a valid version id."
            )
        for v in found:
            if v.version == number:
                return v
        raise version_not_found(number)

    def lookup(self, subject: str, text: str) -> Version:
        self._parse(text)
        if not self.state.live(subject):
            raise subject_not_found(subject)
        found = self.state.find(subject, text)
        if found is None:
            raise schema_not_found()
        return found

    def incompatibilities(
        self, subject: str, text: str, version: str | None
    ) -> list[Incompatibility]:
        """Against ``version`` (None: every live version; "latest": the subject's level)."""
        new = self._parse(text)
        live = self.state.live(subject)
        level = self.state.level(subject)
        if version is None:
            against = live
            level = _transitive(level)
        elif version in ("latest", "-1"):
            if not live:
                return []
            against = live
        else:
            against = [self.version(subject, version)]
            level = _non_transitive(level)
        return check(new, [(f"version {v.version}", self._parse(v.schema)) for v in against], level)

    # --- writes --------------------------------------------------------------------------------

    async def register(self, subject: str, text: str) -> int:
        self._check_size(subject, text)
        self._parse(text)
        async with self._lock:
            existing = self.state.find(subject, text)
            if existing is not None:
                return existing.id
            problems = self.incompatibilities(subject, text, "latest")
            if problems:
                details = "; ".join(_confluent_message(p) for p in problems)
                raise ApiError(
                    409,
                    409,
                    "Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}", details: [{details}]',
                )
            stored = Version(
                subject,
                self.state.next_version(subject),
                self.state.id_for(text),
                canonical(text),
            )
            await self._append(schema_key(subject, stored.version), schema_value(stored))
            return stored.id

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        async with self._lock:
            if permanent:
                every = self.state.all_versions(subject)
                if not every:
                    raise subject_not_found(subject)
                if any(not v.deleted for v in every):
                    raise ApiError(
                        404,
                        40405,
                        f"Subject '{subject}' was not deleted first before being permanently deleted",
                    )
                for v in every:
                    await self._append(schema_key(subject, v.version), None)
                return [v.version for v in every]
            live = self.state.live(subject)
            if not live:
                raise subject_not_found(subject)
            for v in live:
                deleted = Version(v.subject, v.version, v.id, v.schema, deleted=True)
                await self._append(schema_key(subject, v.version), schema_value(deleted))
            return [v.version for v in live]

    async def set_level(self, subject: str | None, level: str) -> Level:
        try:
            parsed = Level(str(level).upper())
        except ValueError:
            raise ApiError(422, 42203, f"Invalid compatibility level: {level}") from None
        async with self._lock:
            await self._append(config_key(subject), {"compatibilityLevel": parsed.value})
        return parsed

    async def delete_level(self, subject: str) -> Level:
        async with self._lock:
            if subject not in self.state.levels:
                raise ApiError(
                    404,
                    40408,
                    f"Subject '{subject}' does not have subject-level compatibility configured",
                )
            previous = self.state.levels[subject]
            await self._append(config_key(subject), None)
            return previous

    async def _append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        await self.log.append(key, value)
        self.state.apply(key, value)

    @staticmethod
    def _check_size(subject: str, text: str) -> None:
        """Refuse (413), before the slow Avro parse, a schema too large for the registry's log."""
        stored = Version(subject, 1, 1, canonical(Registry._json(text)))
        size = encoded_size(schema_value(stored))
        if size > MAX_RECORD_BYTES:
            raise ApiError(
                413,
                41301,
                f"Schema too large: it is stored as {size} bytes and the registry's log "
                f"takes records of at most {MAX_RECORD_BYTES} bytes",
            )

    @staticmethod
    def _json(text: str) -> str:
        """``text`` once it is known to be JSON of a sane depth (checked before parsing)."""
        try:
            check_shape(text)
            json.loads(text)  # ValueError: not JSON, or an integer over Python's 4,300 digits
        except (SchemaShapeError, ValueError, TypeError) as exc:
            raise ApiError(422, 42201, f"Invalid schema: {exc}") from exc
        return text

    @staticmethod
    def _parse(text: str) -> Any:
        """Parse and validate; the JSON's depth is bounded before anything recurses into it."""
        Registry._json(text)
        try:
            check_defaults(text)  # also bounds the field count before the (quadratic) parse
            parsed = parse(text)
        except (
            InvalidAvroSchema,
            InvalidDefaultError,
            SchemaShapeError,
            ValueError,
            TypeError,
        ) as exc:
            raise ApiError(422, 42201, f"Invalid schema: {exc}") from exc
        return parsed


def _transitive(level: Level) -> Level:
    return level if level is Level.NONE or level.transitive else Level(f"{level}_TRANSITIVE")


def _non_transitive(level: Level) -> Level:
    return Level(level.removesuffix("_TRANSITIVE"))
