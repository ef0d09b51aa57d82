"""An async client of the Confluent Schema Registry REST API (ours, Confluent's, Karapace...).

Schemas are immutable once registered, so what the registry says about an id, or about a
(subject, schema) pair, is cached for the life of the client. Errors keep Confluent's
``error_code``; unreachable registries and 5xx answers raise the retriable
:class:`~streams.errors.RegistryUnavailableError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from streams.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RegistryError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from streams.settings import RegistrySettings

__all__ = ["Compatibility", "RegistryClient", "SchemaVersion", "schema_text"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

_BY_ERROR_CODE: dict[int, type[RegistryError]] = {
    40401: SubjectNotFoundError,
    40402: VersionNotFoundError,
    40403: SchemaNotFoundError,
    409: IncompatibleSchemaError,
    42201: InvalidSchemaError,
}


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    schema: str


@dataclass(frozen=True)
class Compatibility:
    is_compatible: bool
    messages: tuple[str, ...] = ()


def schema_text(schema: str | dict[str, Any]) -> str:
    """The compact JSON text we register (the same bytes for the same schema, so caches hit)."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    return json.dumps(schema, separators=(",", ":"))


class RegistryClient:
    """Async Confluent-compatible registry client; use as an async context manager or ``close()``."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._schemas_by_id: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            auth = None
            if self.settings.username is not None:
                password = (
                    self.settings.password.get_secret_value() if self.settings.password else ""
                )
                auth = aiohttp.BasicAuth(self.settings.username, password)
            self._session = aiohttp.ClientSession(
                auth=auth,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                headers={"Accept": CONTENT_TYPE},
            )
        return self._session

    async def _request(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        url = self._base + path
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else None
        try:
            async with self._http().request(
                method, url, data=data, headers=headers, params=params or None
            ) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RegistryUnavailableError(
                f"schema registry at {self._base} is unreachable: "
                f"{type(exc).__name__}: {exc or 'no answer'}"
            ) from exc
        try:
            payload = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = None
        if status < 300:
            return payload
        error_code = status
        message = text[:500]
        if isinstance(payload, dict):
            error_code = int(payload.get("error_code", status))
            message = str(payload.get("message", message))
        detail = f"{method} {path}: HTTP {status}, error {error_code}: {message}"
        if status >= 500:
            raise RegistryUnavailableError(detail, status=status, error_code=error_code)
        cls = _BY_ERROR_CODE.get(error_code, RegistryError)
        raise cls(detail, status=status, error_code=error_code)

    # --- schemas -------------------------------------------------------------------------------

    async def schema_by_id(self, schema_id: int) -> str:
        """The schema text registered under a global id (cached: ids never change meaning)."""
        if schema_id in self._schemas_by_id:
            return self._schemas_by_id[schema_id]
        payload = await self._request("GET", f"/schemas/ids/{schema_id}")
        schema = str(_field(payload, "schema"))
        self._schemas_by_id[schema_id] = schema
        return schema

    async def register(self, subject: str, schema: str | dict[str, Any]) -> int:
        """Register a schema under a subject (idempotent); returns its global id (cached)."""
        text = schema_text(schema)
        key = (subject, text)
        if key in self._ids:
            return self._ids[key]
        payload = await self._request(
            "POST", f"/subjects/{_q(subject)}/versions", {"schema": text, "schemaType": "AVRO"}
        )
        schema_id = int(_field(payload, "id"))
        self._ids[key] = schema_id
        self._schemas_by_id.setdefault(schema_id, text)
        return schema_id

    async def lookup(self, subject: str, schema: str | dict[str, Any]) -> SchemaVersion:
        """The version of ``subject`` holding this schema (SchemaNotFoundError if none)."""
        payload = await self._request(
            "POST", f"/subjects/{_q(subject)}", {"schema": schema_text(schema)}
        )
        return _version(payload)

    async def version(self, subject: str, version: int | str = "latest") -> SchemaVersion:
        payload = await self._request("GET", f"/subjects/{_q(subject)}/versions/{version}")
        return _version(payload)

    async def versions(self, subject: str) -> list[int]:
        return [int(v) for v in await self._request("GET", f"/subjects/{_q(subject)}/versions")]

    async def subjects(self) -> list[str]:
        return [str(s) for s in await self._request("GET", "/subjects")]

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        params = {"permanent": "true"} if permanent else {}
        deleted = await self._request("DELETE", f"/subjects/{_q(subject)}", **params)
        self._ids = {key: i for key, i in self._ids.items() if key[0] != subject}
        return [int(v) for v in deleted]

    async def check_compatibility(
        self, subject: str, schema: str | dict[str, Any], version: int | str = "latest"
    ) -> Compatibility:
        payload = await self._request(
            "POST",
            f"/compatibility/subjects/{_q(subject)}/versions/{version}",
            {"schema": schema_text(schema)},
            verbose="true",
        )
        return Compatibility(
            bool(_field(payload, "is_compatible")),
            tuple(str(m) for m in payload.get("messages", [])),
        )

    # --- configuration -------------------------------------------------------------------------

    async def compatibility_level(self, subject: str | None = None) -> str:
        path = "/config" if subject is None else f"/config/{_q(subject)}"
        params = {} if subject is None else {"defaultToGlobal": "true"}
        payload = await self._request("GET", path, **params)
        return str(_field(payload, "compatibilityLevel"))

    async def set_compatibility_level(self, level: str, subject: str | None = None) -> str:
        path = "/config" if subject is None else f"/config/{_q(subject)}"
        payload = await self._request("PUT", path, {"compatibility": level})
        return str(_field(payload, "compatibility"))


def _field(payload: Any, name: str) -> Any:
    """A field of a registry answer; a registry that answers something else is broken."""
    if not isinstance(payload, dict) or name not in payload:
        raise RegistryError(
            f"unexpected answer from the schema registry (no {name!r}): {payload!r:.200}"
        )
    return payload[name]


def _q(subject: str) -> str:
    return quote(subject, safe="")


def _version(payload: Any) -> SchemaVersion:
    return SchemaVersion(
        subject=str(_field(payload, "subject")),
        version=int(_field(payload, "version")),
        id=int(_field(payload, "id")),
        schema=str(_field(payload, "schema")),
    )
