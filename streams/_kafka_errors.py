"""Where aiokafka exceptions enter Backbone: one mapping, used by the producer and consumer."""

from __future__ import annotations

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)
from aiokafka.errors import (
    RecordTooLargeError as _BrokerRecordTooLarge,
)

from streams.errors import (
    BackboneError,
    KafkaUnavailableError,
    PublishRejectedError,
    RecordTooLargeError,
)


def translate(exc: KafkaError, doing: str) -> BackboneError:
    """Our error for an aiokafka one; the caller raises it ``from exc``.

    Timeouts and connection problems mean the cluster did not take the write *yet*: retriable.
    Errors aiokafka itself marks retriable (leader moved, not enough replicas...) are the same.
    Everything else (record too large, authorisation) will not get better by retrying.
    """
    retriable = getattr(exc, "retriable", False)
    if retriable or isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return KafkaUnavailableError(f"{doing}: {type(exc).__name__}: {exc}")
    if isinstance(exc, MessageSizeTooLargeError | _BrokerRecordTooLarge):
        return RecordTooLargeError(f"{doing}: {type(exc).__name__}: {exc}")
    return PublishRejectedError(f"{doing}: {type(exc).__name__}: {exc}")
