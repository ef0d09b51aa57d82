"""Record headers of the call pipeline (names and formats live in :mod:`streams.headers`).

The failure envelope travels with a call through the retry tiers so the dead letter can name the
first failure and the record that started it, not only the last hop.
"""

from __future__ import annotations

from collections.abc import Mapping

from streams import headers as h
from streams.headers import (
    DLT_ATTEMPTS,
    DLT_FIRST_FAILURE_AT,
    DLT_LAST_FAILURE_AT,
    DLT_MESSAGE,
    DLT_SERVICE,
    DUE_AT,
    REDRIVEN_FROM,
    iso,
    parse_time,
)

__all__ = [
    "DLT_ATTEMPTS",
    "DLT_FIRST_FAILURE_AT",
    "DLT_LAST_FAILURE_AT",
    "DLT_MESSAGE",
    "DLT_SERVICE",
    "DUE_AT",
    "ENVELOPE_ORIGIN",
    "REDRIVEN_FROM",
    "iso",
    "parse_time",
    "text",
]

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
