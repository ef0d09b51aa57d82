"""Events <-> bytes in the Confluent wire format, the format every partner client reads.

    byte 0      magic byte, always 0
    bytes 1..4  schema id, big-endian: the *writer* schema, resolved through the registry
    bytes 5..   Avro binary of the event

Encoding registers the event's schema under the subject ``<topic>-<record full name>``
(TopicRecordNameStrategy: a topic carries several event types) and caches the id. Decoding reads
the writer schema by id (cached, parsed once) and resolves it to the current model's schema, so
old records decode into today's model. Every failure is a non-retriable
:class:`~streams.errors.CodecError`; only an unreachable registry is retriable.

The decoder is exposed to hostile bytes (anything can be produced to a topic): it checks the
size limit before touching the body, and fastavro's own bounds checks turn huge or negative length
prefixes into errors (the fuzz tests hold it to that).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError as FastavroResolutionError

from streams._flat_writer import flat_writer
from streams._plain_avro import PlainReadError, Read, plain_reader
from streams._plain_fields import fields_reader
from streams.errors import (
    CodecError,
    CorruptPayload,
    InvalidMagicByte,
    PayloadTooLarge,
    SchemaNotFoundError,
    SchemaResolutionError,
    UnknownEventType,
    UnknownSchemaId,
)
from streams.events import EVENT_TYPES, Event, event_class
from streams.events._avro import from_avro_builder, to_avro_builder
from streams.registry_client import RegistryClient, schema_text

__all__ = ["HEADER_SIZE", "MAGIC", "Codec", "subject_for"]

MAGIC = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5


def subject_for(topic: str, event_type: type[Event]) -> str:
    """The registry subject of an event type on a topic (TopicRecordNameStrategy)."""
    return f"{topic}-{event_type.fullname()}"


@dataclass(frozen=True)
class _Writer:
    parsed: Any  # fastavro parsed schema
    to_avro: Callable[[Any], dict[str, Any]]
    text: str
    #: the compiled writer of a flat record (:mod:`streams._flat_writer`); None: fastavro only
    flat: Callable[[Any], bytes] | None = None


@dataclass(frozen=True)
class _Reader:
    """Everything needed to decode records written with one schema id."""

    writer: Any
    reader: Any  # None when the writer schema is the current one: no resolution needed
    build: Callable[[dict[str, Any]], Any]
    kind: type[Event]
    writer_json: Any  # the schemas as JSON data, for the plain reader made on demand
    reader_json: Any


@dataclass(frozen=True)
class _PlainReader:
    """The same resolution with every logical type dropped (see :meth:`Codec.decode_plain`):
    our own reader when no resolution is needed, else fastavro's."""

    own: Read | None
    writer: Any
    reader: Any
    kind: type[Event]


def _plain_reader_of(reader: _Reader, fields: frozenset[str] | None = None) -> _PlainReader:
    own = None
    if reader.reader_json is None:
        with contextlib.suppress(PlainReadError, KeyError, TypeError):  # e.g. a recursive type
            if fields is None:
                own = plain_reader(reader.writer_json)
            else:
                own = fields_reader(reader.writer_json, fields)
    return _PlainReader(
        own,
        fastavro.parse_schema(_without_logical_types(reader.writer_json)),
        None
        if reader.reader_json is None
        else fastavro.parse_schema(_without_logical_types(reader.reader_json)),
        reader.kind,
    )


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


def _fullname(schema: Any) -> str:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaResolutionError("writer schema is not an Avro record")
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class Codec:
    """Encodes events for a topic and decodes any record whose writer schema the registry knows."""

    def __init__(self, registry: RegistryClient, *, max_payload_bytes: int = 1_048_576) -> None:
        self.registry = registry
        self.max_payload_bytes = max_payload_bytes
        self._writers: dict[type[Event], _Writer] = {}
        self._ids: dict[tuple[str, type[Event]], int] = {}
        self._headers: dict[int, bytes] = {}
        self._readers: dict[int, _Reader] = {}
        self._plain: dict[int, _PlainReader] = {}
        self._fields: dict[tuple[int, frozenset[str]], _PlainReader] = {}
        # one registry round trip per schema however many records need it at once: a worker
        # starting with hundreds of deliveries in flight would otherwise ask hundreds of times
        self._registering: dict[tuple[str, type[Event]], asyncio.Future[int]] = {}
        self._resolving: dict[int, asyncio.Future[_Reader]] = {}

    # --- encode --------------------------------------------------------------------------------

    async def encode(self, event: Event, topic: str) -> bytes:
        """The record value for ``event`` on ``topic`` (registers its schema on first use)."""
        schema_id = self._ids.get((topic, type(event)))
        if schema_id is None:
            schema_id = await self.schema_id(type(event), topic)
        return self._encode(schema_id, event)

    def encode_cached(self, event: Event, topic: str) -> bytes | None:
        """Synchronous :meth:`encode` when the schema id is already known; None otherwise."""
        schema_id = self._ids.get((topic, type(event)))
        return None if schema_id is None else self._encode(schema_id, event)

    async def schema_id(self, event_type: type[Event], topic: str) -> int:
        """The registry id of ``event_type``'s current schema under ``topic``'s subject."""
        key = (topic, event_type)
        if key in self._ids:
            return self._ids[key]
        task = self._registering.get(key)
        if task is None:
            # a task of its own: a caller that gives up does not cancel it for the others
            task = asyncio.ensure_future(self._register(event_type, topic))
            self._registering[key] = task
            task.add_done_callback(lambda _: self._registering.pop(key, None))
        return await asyncio.shield(task)

    async def _register(self, event_type: type[Event], topic: str) -> int:
        key = (topic, event_type)
        if key not in self._ids:
            if EVENT_TYPES.get(getattr(event_type, "event_type", "")) is not event_type:
                raise UnknownEventType(f"{event_type.__name__} is not a registered event type")
            writer = self._writer(event_type)
            schema_id = await self.registry.register(subject_for(topic, event_type), writer.text)
            self._headers[schema_id] = HEADER.pack(MAGIC, schema_id)
            # The id names our own current schema, so its records decode without a lookup.
            self._readers.setdefault(
                schema_id,
                _Reader(
                    writer.parsed,
                    None,
                    from_avro_builder(event_type),
                    event_type,
                    event_type.avro_schema(),
                    None,
                ),
            )
            self._ids[key] = schema_id
        return self._ids[key]

    def _writer(self, event_type: type[Event]) -> _Writer:
        writer = self._writers.get(event_type)
        if writer is None:
            schema = event_type.avro_schema()
            writer = _Writer(
                fastavro.parse_schema(schema),
                to_avro_builder(event_type),
                schema_text(schema),
                flat_writer(schema),
            )
            self._writers[event_type] = writer
        return writer

    def _encode(self, schema_id: int, event: Event) -> bytes:
        writer = self._writers[type(event)]
        datum = writer.to_avro(event)
        value = None
        if writer.flat is not None:
            try:
                value = self._headers[schema_id] + writer.flat(datum)
            except Exception:  # anything unusual: fastavro's bytes or its error stand
                value = None
        if value is None:
            buffer = io.BytesIO()
            buffer.write(self._headers[schema_id])
            try:
                fastavro.schemaless_writer(buffer, writer.parsed, datum)
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                # Models are validated, so this is a model/schema mismatch: a bug, not bad input.
                raise CodecError(f"cannot encode {type(event).__name__}: {exc}") from exc
            value = buffer.getvalue()
        if len(value) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"{type(event).__name__} encodes to {len(value)} bytes, "
                f"over the {self.max_payload_bytes}-byte limit"
            )
        return value

    # --- decode --------------------------------------------------------------------------------

    async def decode(self, data: bytes) -> Event:
        """The event in a record value (any schema id the registry knows, read as today's model)."""
        schema_id = self._schema_id_of(data)
        reader = self._readers.get(schema_id)
        if reader is None:
            reader = await self._resolve_once(schema_id)
        return self._decode(reader, data)

    def decode_cached(self, data: bytes) -> Event | None:
        """Synchronous :meth:`decode` when the schema id was seen before; None otherwise."""
        reader = self._readers.get(self._schema_id_of(data))
        return None if reader is None else self._decode(reader, data)

    def decode_plain(
        self, data: bytes, fields: frozenset[str] | None = None
    ) -> tuple[type[Event], dict[str, Any]] | None:
        """The event type and Avro datum of a record, without building the event model; None
        when the schema id was not seen before (:meth:`decode` it once first).

        The datum is what today's schema reads, minus logical types: ``event_id`` is a str,
        timestamps are epoch microseconds, enums their symbol. Building the model and the
        ``datetime``/``UUID`` values costs more than reading the bytes; a read model that needs a
        few fields of many records (a projection rebuild) skips it. The same checks as
        :meth:`decode` apply (size, header, trailing bytes), with the same errors.

        ``fields``: the datum may hold only these (the others are stepped over, their structure
        checked but their text not decoded: see :mod:`streams._plain_fields`); a datum resolved
        from an older writer schema holds them all.
        """
        schema_id = self._schema_id_of(data)
        plain = self._plain_of(schema_id, fields)
        if plain is None:
            return None
        if plain.own is None:
            return plain.kind, self._read(plain.writer, plain.reader, data)
        try:
            datum, end = plain.own(data, HEADER_SIZE)
        except Exception as exc:  # PlainReadError, IndexError, struct.error, UnicodeDecodeError
            raise CorruptPayload(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if end != len(data):
            raise CorruptPayload(f"{len(data) - end} trailing bytes after the record")
        return plain.kind, datum

    def _plain_of(self, schema_id: int, fields: frozenset[str] | None) -> _PlainReader | None:
        plain = (
            self._plain.get(schema_id) if fields is None else self._fields.get((schema_id, fields))
        )
        if plain is None:
            reader = self._readers.get(schema_id)
            if reader is None:
                return None
            plain = _plain_reader_of(reader, fields)
            if fields is None:
                self._plain[schema_id] = plain
            else:
                self._fields[(schema_id, fields)] = plain
        return plain

    def own_plain_reader(
        self, schema_id: int, fields: frozenset[str] | None = None
    ) -> tuple[type[Event], Read] | None:
        """For a loop over many records: the event type and the reader :meth:`decode_plain`
        uses on the body (after the 5-byte header) of a record with ``schema_id``, when it is
        our own reader (no resolution); None otherwise (or an id not seen yet). A caller that
        reads with it must itself check the header and that the reader ends at the record's
        end, and call :meth:`decode_plain` on anything else (which raises what is wrong)."""
        plain = self._plain_of(schema_id, fields)
        if plain is None or plain.own is None:
            return None
        return plain.kind, plain.own

    def _schema_id_of(self, data: bytes) -> int:
        size = len(data)
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"record of {size} bytes, over the {self.max_payload_bytes} limit"
            )
        if size < HEADER_SIZE:
            raise CorruptPayload(f"record of {size} bytes is shorter than the 5-byte header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise InvalidMagicByte(f"magic byte {magic} (expected 0): not Confluent wire format")
        return int(schema_id)

    async def _resolve_once(self, schema_id: int) -> _Reader:
        """:meth:`_resolve`, shared by every concurrent decode of the same unknown id."""
        task = self._resolving.get(schema_id)
        if task is None:
            task = asyncio.ensure_future(self._resolve(schema_id))
            self._resolving[schema_id] = task
            task.add_done_callback(lambda _: self._resolving.pop(schema_id, None))
        return await asyncio.shield(task)

    async def _resolve(self, schema_id: int) -> _Reader:
        try:
            text = await self.registry.schema_by_id(schema_id)
        except SchemaNotFoundError as exc:
            raise UnknownSchemaId(f"the registry has no schema with id {schema_id}") from exc
        try:
            writer_schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaResolutionError(f"schema {schema_id} is not JSON: {exc}") from exc
        fullname = _fullname(writer_schema)
        try:
            cls = event_class(fullname)
        except UnknownEventType as exc:
            raise UnknownEventType(f"schema {schema_id} is {fullname}: no such event") from exc
        reader_schema = cls.avro_schema()
        try:
            parsed_writer = fastavro.parse_schema(writer_schema)
            parsed_reader = (
                None if writer_schema == reader_schema else fastavro.parse_schema(reader_schema)
            )
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaResolutionError(f"schema {schema_id} cannot be parsed: {exc}") from exc
        reader = _Reader(
            parsed_writer,
            parsed_reader,
            from_avro_builder(cls),
            cls,
            writer_schema,
            None if parsed_reader is None else reader_schema,
        )
        self._readers[schema_id] = reader
        return reader

    def _decode(self, reader: _Reader, data: bytes) -> Event:
        datum = self._read(reader.writer, reader.reader, data)
        try:
            event = reader.build(datum)
        except (ValueError, TypeError, KeyError) as exc:  # e.g. an enum symbol the model lacks
            raise SchemaResolutionError(f"decoded record does not fit the model: {exc}") from exc
        assert isinstance(event, Event)
        return event

    @staticmethod
    def _read(writer: Any, reader: Any, data: bytes) -> dict[str, Any]:
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            datum: Any = fastavro.schemaless_reader(stream, writer, reader)
        except FastavroResolutionError as exc:
            raise SchemaResolutionError(f"cannot resolve writer to reader schema: {exc}") from exc
        except Exception as exc:  # EOFError, ValueError, IndexError... from hostile bytes
            raise CorruptPayload(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise CorruptPayload(f"{len(data) - stream.tell()} trailing bytes after the record")
        if not isinstance(datum, dict):
            raise CorruptPayload("the Avro body is not a record")
        return datum
