"""Record header names Backbone writes and reads, in one place so every layer spells them alike.

Header values are UTF-8 bytes. Agents that cause side effects (external calls, webhook deliveries)
must call :func:`side_effects_allowed` on a record's headers before acting: replayed copies carry
:data:`REPLAYED_FROM` and may only trigger side effects when the operator asked for it explicitly
(``backbone replay --allow-side-effects`` sets :data:`REPLAY_SIDE_EFFECTS` to ``allow``).
"""

from __future__ import annotations

from collections.abc import Mapping

#: Set by :class:`streams.Publisher` on every record.
EVENT_TYPE = "backbone-event-type"
SCHEMA_ID = "backbone-schema-id"
#: W3C trace context of the event, when it has one.
TRACEPARENT = "traceparent"

#: Set on records written to a dead-letter topic because they could not be decoded.
DLT_REASON = "backbone-dlt-reason"
DLT_ERROR_CLASS = "backbone-dlt-error-class"
DLT_ORIGINAL_TOPIC = "backbone-dlt-original-topic"
DLT_ORIGINAL_PARTITION = "backbone-dlt-original-partition"
DLT_ORIGINAL_OFFSET = "backbone-dlt-original-offset"
DLT_ORIGINAL_TIMESTAMP = "backbone-dlt-original-timestamp"

#: On the last ``calls.results`` record of one handling of a call: its idempotency key, the id of
#: the ``call.started`` claim it settles, and (when the call ended) ``succeeded`` or ``gave-up``.
#: Readers can tell a call's final outcome without decoding (the call ledger, the reply waiter).
IDEMPOTENCY_KEY = "backbone-idempotency-key"
CLAIM = "backbone-claim"
CALL_END = "backbone-call-end"

#: Set by ``backbone replay`` on every copy: ``topic/partition/offset`` of the original record.
REPLAYED_FROM = "backbone-replayed-from"
#: ``allow`` when the operator explicitly let a replay re-trigger side effects.
REPLAY_SIDE_EFFECTS = "backbone-replay-side-effects"
ALLOW = b"allow"


def side_effects_allowed(headers: Mapping[str, bytes]) -> bool:
    """False for replayed copies, unless the replay was run with ``--allow-side-effects``."""
    if REPLAYED_FROM not in headers:
        return True
    return headers.get(REPLAY_SIDE_EFFECTS) == ALLOW
