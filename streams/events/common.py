"""Records shared by several event families (namespace ``io.backbone.common``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from streams.events._base import Record


class DeadLetterReason(StrEnum):
    """Why a record was dead-lettered."""

    EXHAUSTED = "exhausted"  # every attempt the policy allows failed
    FATAL = "fatal"  # a non-retriable error: retrying cannot help
    EXPIRED = "expired"  # its deadline passed before it could succeed
    UNDECODABLE = "undecodable"  # its bytes could not be decoded


class DeadLetterEnvelope(Record):
    """Where a dead-lettered record came from and why it failed: enough to diagnose and re-drive."""

    reason: DeadLetterReason = Field(description="Why the record was dead-lettered.")
    original_topic: str = Field(description="Topic the failed record was consumed from.")
    original_partition: int = Field(description="Partition of the failed record.")
    original_offset: int = Field(description="Offset of the failed record.")
    original_timestamp: datetime | None = Field(
        default=None, description="Kafka timestamp of the failed record, if it had one."
    )
    error_class: str = Field(description="Class name of the last error (e.g. `HTTPStatusError`).")
    message: str = Field(description="Human-readable message of the last error.")
    attempts: int = Field(description="How many attempts were made before giving up.")
    first_failure_at: datetime = Field(description="When the first attempt failed (UTC).")
    last_failure_at: datetime = Field(description="When the last attempt failed (UTC).")
    service: str = Field(description="External service or component that failed.")
