"""Topic ids (Kafka's UUID per topic), the epoch of a position.

A topic deleted and created again under the same name restarts its offsets at 0, so an offset alone
cannot tell an old position from a new one; the topic id, assigned by the cluster at creation, can.
aiokafka speaks Metadata only up to v5, which predates topic ids, so this module sends Metadata v10
(the first version that returns them; Kafka 4.x serves v4 to v13) with aiokafka's own protocol types.
"""

from __future__ import annotations

import base64
import uuid
from io import BytesIO
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from connectors.realtime.errors import RealtimeUnavailableError
from streams.admin import admin_client
from streams.settings import KafkaSettings


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return value


class _MetadataResponse_v10(Response):  # type: ignore[misc]  # noqa: N801 (aiokafka's naming)
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class _MetadataRequest_v10(RequestStruct):  # type: ignore[misc]  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _MetadataRequest(Request[_MetadataRequest_v10]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequest_v10]) -> _MetadataRequest_v10:
        topics: list[tuple[bytes, str, dict[int, bytes]]] = [
            (bytes(16), name, {}) for name in self._topics
        ]
        return request_struct_class(topics, False, False, False, {})


def epoch_of(topic_id: bytes) -> str:
    """A short, URL-safe spelling of a topic id (what positions carry as ``epoch``)."""
    return base64.urlsafe_b64encode(topic_id).rstrip(b"=").decode()


async def topic_epochs(kafka: KafkaSettings, topics: list[str]) -> dict[str, str]:
    """The epoch (topic id) of each existing topic; raises if one is missing or Kafka is down."""
    try:
        async with admin_client(kafka) as admin:
            response: Any = await admin._send_request(_MetadataRequest(topics))
    except KafkaError as exc:
        raise RealtimeUnavailableError(f"cannot read the topic ids of {topics}: {exc}") from exc
    found: dict[str, str] = {}
    for entry in response.to_object()["topics"]:
        if entry["error_code"] != 0 or entry["topic_id"] == bytes(16):
            raise RealtimeUnavailableError(
                f"topic {entry['name']!r} has no id (error code {entry['error_code']})"
            )
        found[entry["name"]] = epoch_of(entry["topic_id"])
    missing = set(topics) - set(found)
    if missing:
        raise RealtimeUnavailableError(f"topics not found: {sorted(missing)}")
    return found


def describe_epoch(epoch: str) -> str:
    """The topic id in Kafka's usual spelling, for logs and docs."""
    return str(uuid.UUID(bytes=base64.urlsafe_b64decode(epoch + "==")))
