"""Where aiokafka exceptions enter Backbone: one mapping, used by the producer and consumer."""

from __future__ import annotations

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.errors import (
    RecordTooLargeError as _BrokerRecordTooLarge,
)

from streams._aiokafka_compat import MaybeWrittenError
from streams.errors import (
    BackboneError,
    KafkaUnavailableError,
    PublishRejectedError,
    RecordTooLargeError,
    WriteOutcomeUnknownError,
)


def translate(exc: KafkaError, doing: str) -> BackboneError:
    """Our error for an aiokafka one; the caller raises it ``from exc``.

    Timeouts and connection problems mean the cluster did not take the write *yet*: retriable.
    Errors aiokafka itself marks retriable (leader moved, not enough replicas...) are the same.
    A broken idempotent sequence (the producer is rebuilt with a fresh id) and a closed producer
    are the same for the caller: not written this time, a retry will be.
    Everything else (record too large, authorisation) will not get better by retrying.
    A batch that may have been appended before it failed is neither: its outcome is unknown.
    """
    retriable = getattr(exc, "retriable", False)
    name = type(exc).__name__
    detail = str(exc).removeprefix(f"{name}: ").removeprefix(name).strip(" :")
    text = f"{doing}: {name}" + (f": {detail}" if detail else "")
    if isinstance(exc, MaybeWrittenError):  # sent, then failed: it may be in the log
        return WriteOutcomeUnknownError(text)
    if retriable or isinstance(exc, _UNAVAILABLE):
        return KafkaUnavailableError(text)
    if isinstance(exc, MessageSizeTooLargeError | _BrokerRecordTooLarge):
        return RecordTooLargeError(text)
    return PublishRejectedError(text)


_UNAVAILABLE = (
    KafkaTimeoutError,
    KafkaConnectionError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
    ProducerClosed,
)
