"""Record headers of the call pipeline (values are UTF-8 text).

The failure envelope travels with a call through the retry tiers so the dead letter can name the
first failure and the record that started it, not only the last hop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from streams import headers as h

#: When a retry-tier record may be attempted again (ISO 8601, UTC).
DUE_AT = "backbone-due-at"
DLT_SERVICE = "backbone-dlt-service"
DLT_ATTEMPTS = "backbone-dlt-attempts"
DLT_FIRST_FAILURE_AT = "backbone-dlt-first-failure-at"
DLT_LAST_FAILURE_AT = "backbone-dlt-last-failure-at"
DLT_MESSAGE = "backbone-dlt-message"
#: Set on records re-driven from the dead letters: ``topic/partition/offset`` of the dead letter.
REDRIVEN_FROM = "backbone-redriven-from"

ENVELOPE_ORIGIN = (
    h.DLT_ORIGINAL_TOPIC,
    h.DLT_ORIGINAL_PARTITION,
    h.DLT_ORIGINAL_OFFSET,
    h.DLT_ORIGINAL_TIMESTAMP,
    DLT_FIRST_FAILURE_AT,
)


def text(headers: Mapping[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("utf-8", "replace")


def iso(moment: datetime) -> bytes:
    return moment.astimezone(UTC).isoformat().encode()


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
