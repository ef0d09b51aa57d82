"""Record header names Backbone writes and reads, in one place so every layer spells them alike.

Header values are UTF-8 bytes; times are ISO 8601 in UTC (:func:`iso`, read with :func:`parse_time`),
and a dead letter's :data:`DLT_REASON` is always a ``DeadLetterReason`` value (``exhausted``,
``fatal``, ``expired``, ``undecodable``), its error text in :data:`DLT_MESSAGE`. Every header name
is written here once; docs/partners.md lists them for partner teams.

Agents that cause side effects (external calls, webhook deliveries)
must call :func:`side_effects_allowed` on a record's headers before acting: replayed copies carry
:data:`REPLAYED_FROM` and may only trigger side effects when the operator asked for it explicitly
(``backbone replay --allow-side-effects`` sets :data:`REPLAY_SIDE_EFFECTS` to ``allow``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from streams.errors import CodecError
from streams.events.common import DeadLetterEnvelope, DeadLetterReason

#: Set by :class:`streams.Publisher` on every record.
EVENT_TYPE = "backbone-event-type"
SCHEMA_ID = "backbone-schema-id"
#: W3C trace context of the event, when it has one.
TRACEPARENT = "traceparent"

#: Set on every dead letter: why (a ``DeadLetterReason`` value), the error, and where the record
#: came from (topic, partition, offset, timestamp in ms of the first record of its history).
DLT_REASON = "backbone-dlt-reason"
DLT_ERROR_CLASS = "backbone-dlt-error-class"
DLT_MESSAGE = "backbone-dlt-message"
DLT_ORIGINAL_TOPIC = "backbone-dlt-original-topic"
DLT_ORIGINAL_PARTITION = "backbone-dlt-original-partition"
DLT_ORIGINAL_OFFSET = "backbone-dlt-original-offset"
DLT_ORIGINAL_TIMESTAMP = "backbone-dlt-original-timestamp"
#: The failure envelope a failed call or delivery carries through the retry tiers to its dead
#: letter: service (or endpoint), attempts made, first and last failure (ISO 8601 UTC).
DLT_SERVICE = "backbone-dlt-service"
DLT_ATTEMPTS = "backbone-dlt-attempts"
DLT_FIRST_FAILURE_AT = "backbone-dlt-first-failure-at"
DLT_LAST_FAILURE_AT = "backbone-dlt-last-failure-at"

#: When a retry-tier record (calls and webhook deliveries alike) may be attempted again (ISO 8601
#: UTC). A tier record due further out than its tier allows is poison and is dead-lettered.
DUE_AT = "backbone-due-at"
#: On records re-driven from the call dead letters: ``topic/partition/offset`` of the dead letter.
REDRIVEN_FROM = "backbone-redriven-from"
#: On webhook deliveries recovered from their dead letters: ``topic/partition/offset`` likewise.
RECOVERED_FROM = "backbone-recovered-from"
#: On a ``webhooks.endpoints`` record after a secret rotation: until when (unix seconds) the
#: previous secrets still sign.
SECRET_GRACE_UNTIL = "backbone-secret-grace-until"

#: On the last ``calls.results`` record of one handling of a call: its idempotency key, the id of
#: the ``call.started`` claim it settles, and (when the call ended) ``succeeded`` or ``gave-up``.
#: Readers can tell a call's final outcome without decoding (the call ledger, the reply waiter).
IDEMPOTENCY_KEY = "backbone-idempotency-key"
CLAIM = "backbone-claim"
CALL_END = "backbone-call-end"

#: On ``call.requested`` records, set by every Backbone producer (SDK ``Publisher``, gateway,
#: CLI): the call's ``service`` and ``priority`` as in the value, so the router picks the lane
#: without decoding the record. Optional: a record without them is decoded to be routed. They must
#: agree with the value; a lane record whose key or lane does not is sent on to the right lane.
CALL_SERVICE = "backbone-call-service"
CALL_PRIORITY = "backbone-call-priority"

#: Set by ``backbone replay`` on every copy: ``topic/partition/offset`` of the original record.
REPLAYED_FROM = "backbone-replayed-from"
#: ``allow`` when the operator explicitly let a replay re-trigger side effects.
REPLAY_SIDE_EFFECTS = "backbone-replay-side-effects"
ALLOW = b"allow"


def iso(moment: datetime) -> bytes:
    """A header value for a moment: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat().encode()


def parse_time(value: str | bytes | None) -> datetime | None:
    """A moment from a header value (ISO 8601; unix seconds, as webhook tiers once wrote them);
    None when absent or unreadable."""
    if not value:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def envelope_headers(envelope: DeadLetterEnvelope) -> dict[str, bytes]:
    """A dead letter's envelope as headers (for readers that do not decode the value)."""
    headers = {
        DLT_REASON: envelope.reason.value.encode(),
        DLT_ERROR_CLASS: envelope.error_class.encode(),
        DLT_MESSAGE: envelope.message[:1000].encode(),
        DLT_ORIGINAL_TOPIC: envelope.original_topic.encode(),
        DLT_ORIGINAL_PARTITION: str(envelope.original_partition).encode(),
        DLT_ORIGINAL_OFFSET: str(envelope.original_offset).encode(),
        DLT_SERVICE: envelope.service.encode(),
        DLT_ATTEMPTS: str(envelope.attempts).encode(),
        DLT_FIRST_FAILURE_AT: iso(envelope.first_failure_at),
        DLT_LAST_FAILURE_AT: iso(envelope.last_failure_at),
    }
    if envelope.original_timestamp is not None:
        stamp = round(envelope.original_timestamp.timestamp() * 1000)
        headers[DLT_ORIGINAL_TIMESTAMP] = str(stamp).encode()
    return headers


def dead_letter_reason(error: BaseException) -> bytes:
    """The :data:`DLT_REASON` of a record dead-lettered by ``error`` as it was read."""
    reason = (
        DeadLetterReason.UNDECODABLE if isinstance(error, CodecError) else DeadLetterReason.FATAL
    )
    return reason.value.encode()


def side_effects_allowed(headers: Mapping[str, bytes]) -> bool:
    """False for replayed copies, unless the replay was run with ``--allow-side-effects``."""
    if REPLAYED_FROM not in headers:
        return True
    return headers.get(REPLAY_SIDE_EFFECTS) == ALLOW
