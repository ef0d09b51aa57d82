"""Where aiokafka exceptions enter Backbone: one mapping, used by the producer and consumer."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from streams.errors import BackboneError, KafkaUnavailableError, PublishRejectedError


def translate(exc: KafkaError, doing: str) -> BackboneError:
    """Our error for an aiokafka one; the caller raises it ``from exc``.

    Timeouts and connection problems mean the cluster did not take the write *yet*: retriable.
    Errors aiokafka itself marks retriable (leader moved, not enough replicas...) are the same.
    Everything else (record too large, authorisation) will not get better by retrying.
    """
    retriable = getattr(exc, "retriable", False)
    name = type(exc).__name__
    detail = str(exc).removeprefix(f"{name}: ").removeprefix(name).strip(" :")
    text = f"{doing}: {name}" + (f": {detail}" if detail else "")
    if retriable or isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return KafkaUnavailableError(text)
    return PublishRejectedError(text)
