"""Aligning the cluster with the catalogue speaks our errors: an aiokafka error met by an admin
request (a CreateTopics that timed out on a loaded broker escaped as ``RequestTimedOutError``)
becomes a retriable :class:`KafkaUnavailableError`, or a :class:`TopicCatalogueError`."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from streams.admin import _admin_failed
from streams.errors import KafkaUnavailableError, TopicCatalogueError


@pytest.mark.parametrize(
    "error", [RequestTimedOutError(), KafkaTimeoutError(), KafkaConnectionError("refused")]
)
def test_a_timeout_or_a_lost_connection_is_retriable(error: Exception) -> None:
    found = _admin_failed(error, "applying the topic catalogue")
    assert isinstance(found, KafkaUnavailableError)
    assert found.retriable
    assert type(error).__name__ in str(found)
    assert "safe to run again" in str(found)


def test_a_refusal_is_a_catalogue_error() -> None:
    found = _admin_failed(TopicAuthorizationFailedError("t"), "creating topics")
    assert isinstance(found, TopicCatalogueError)
    assert not found.retriable
    assert str(found).startswith("creating topics: TopicAuthorizationFailedError")
