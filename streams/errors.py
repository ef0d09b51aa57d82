"""Errors raised by the ``streams`` library.

Hierarchy::

    BackboneError                  root of every error Backbone raises
    ├── ConfigurationError         bad or missing settings (never retriable)
    ├── KafkaUnavailableError      the cluster cannot be reached or did not acknowledge (retriable)
    ├── PublishRejectedError       the cluster refused a record for good (e.g. too large)
    │   └── RecordTooLargeError    over the producer's request size or the broker's message size
    ├── OffsetCommitError          a consumer lost its partitions before committing (redelivered)
    ├── TopicCatalogueError        a topic is unknown or cannot be aligned with the catalogue
    ├── CodecError                 bytes <-> event failed; never retriable: the record goes to a DLT
    │   ├── InvalidMagicByte       not the Confluent wire format (first byte is not 0)
    │   ├── UnknownSchemaId        the registry does not know the schema id in the header
    │   ├── CorruptPayload         truncated, malformed or trailing bytes in the Avro body
    │   ├── PayloadTooLarge        the record exceeds the codec's size limit
    │   ├── SchemaResolutionError  writer schema cannot be read with the current model's schema
    │   └── UnknownEventType       the record's schema names no event type this code knows
    └── RegistryError              the schema registry refused or failed a request
        ├── RegistryUnavailableError  unreachable, timed out or 5xx (retriable)
        ├── IncompatibleSchemaError   registration breaks the subject's compatibility (409)
        ├── SubjectNotFoundError      40401
        ├── VersionNotFoundError      40402
        ├── SchemaNotFoundError       40403
        └── InvalidSchemaError        42201

Retry behaviour is data on the class: code that decides between retry and dead letter reads
``error.retriable`` instead of chaining ``isinstance`` checks.
"""

from __future__ import annotations


class BackboneError(Exception):
    """Root of every error Backbone raises."""

    retriable: bool = False
    #: Short machine-readable name used in dead letters and API error bodies.
    code: str = "backbone_error"


class ConfigurationError(BackboneError):
    """A setting is missing or invalid."""

    code = "configuration_error"


class KafkaUnavailableError(BackboneError):
    """The Kafka cluster could not be reached or did not acknowledge a write in time."""

    retriable = True
    code = "kafka_unavailable"


class WriteOutcomeUnknownError(KafkaUnavailableError):
    """The cluster did not acknowledge a write that had already been sent: it may or may not be in
    the log. Unlike a plain :class:`KafkaUnavailableError` ("not written, never written later"),
    only a retry with the same id (``event_id``, idempotency key, ``webhook-id``), whose duplicate
    consumers drop, settles it."""

    code = "outcome_unknown"


class PublishRejectedError(BackboneError):
    """The cluster refused a record in a way retrying cannot fix (too large, not authorised...)."""

    code = "publish_rejected"


class RecordTooLargeError(PublishRejectedError):
    """The record is larger than the producer's ``max_request_size`` or the topic's limit."""

    code = "record_too_large"


class OffsetCommitError(BackboneError):
    """A commit was refused (the group rebalanced): the records will be delivered again."""

    code = "offset_commit_failed"


class TopicCatalogueError(BackboneError):
    """A topic is not in the catalogue, or the cluster cannot be aligned with it."""

    code = "topic_catalogue_error"


# --- codec -------------------------------------------------------------------------------------


class CodecError(BackboneError):
    """Bytes could not be turned into an event or back. Retrying the same bytes cannot help."""

    code = "codec_error"


class InvalidMagicByte(CodecError):  # noqa: N818 - names follow the wire-format vocabulary
    code = "invalid_magic_byte"


class UnknownSchemaId(CodecError):  # noqa: N818
    code = "unknown_schema_id"


class CorruptPayload(CodecError):  # noqa: N818
    code = "corrupt_payload"


class PayloadTooLarge(CodecError):  # noqa: N818
    code = "payload_too_large"


class SchemaResolutionError(CodecError):
    code = "schema_resolution_error"


class UnknownEventType(CodecError):  # noqa: N818
    code = "unknown_event_type"


# --- schema registry ---------------------------------------------------------------------------


class RegistryError(BackboneError):
    """The schema registry answered with an error (Confluent ``error_code`` kept on the instance)."""

    code = "registry_error"

    def __init__(self, message: str, *, status: int = 0, error_code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class RegistryUnavailableError(RegistryError):
    retriable = True
    code = "registry_unavailable"


class IncompatibleSchemaError(RegistryError):
    code = "incompatible_schema"


class SubjectNotFoundError(RegistryError):
    code = "subject_not_found"


class VersionNotFoundError(RegistryError):
    code = "version_not_found"


class SchemaNotFoundError(RegistryError):
    code = "schema_not_found"


class InvalidSchemaError(RegistryError):
    code = "invalid_schema"
