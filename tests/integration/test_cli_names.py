"""Issue 14 item 7: a typo is refused in one line with a "did you mean", exit 2; never a
traceback, never a silent success."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._cli import backbone, cli_env, one_error_line

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("topics", "describe", "calls.result"),
            "error: unknown topic 'calls.result'; did you mean 'calls.results'",
        ),
        (
            ("tail", "calls.result", "--no-follow"),
            "error: unknown topic 'calls.result'; did you mean 'calls.results'",
        ),
        (
            ("tail", "calls.results", "--type", "call.sucess", "--no-follow"),
            "error: unknown event type 'call.sucess'; did you mean 'call.succeeded'",
        ),
        (
            ("webhooks", "endpoints", "add", "http://127.0.0.1:9/x", "--event-type", "call.sucess"),
            "error: unknown event type 'call.sucess'; did you mean 'call.succeeded'",
        ),
        (
            ("webhooks", "attempts", "--endpoint", "nope"),
            "error: unknown endpoint 'nope'",
        ),
        (
            ("groups", "reset", "router", "--topic", "calls.requests", "--to", "beginning"),
            "error: unknown consumer group 'router'",
        ),
        (("topic", "list"), "error: unknown command 'topic'; did you mean 'topics'?"),
        (
            ("dlq", "list", "--since", "yesterday"),
            "error: Invalid value for '--since': 'yesterday' is not a time",
        ),
    ],
)
async def test_unknown_names_are_refused_with_a_suggestion(
    env: dict[str, str], args: tuple[str, ...], expected: str
) -> None:
    done = await backbone(env, *args)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done).startswith(expected)
    assert done.stdout == ""


async def test_catalogue_topic_missing_on_the_cluster_says_how_to_create_it(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, tmp_path: Path
) -> None:
    env = cli_env(kafka_settings, schema_registry, Catalogue(prefix="never-applied."), tmp_path)
    done = await backbone(env, "topics", "describe", "calls.results")
    assert done.returncode == 2
    assert one_error_line(done) == (
        "error: topic 'never-applied.calls.results' is in the catalogue but not on the cluster "
        "(create it: `backbone topics apply`)"
    )


async def test_kafka_down_is_one_line_exit_3_without_client_log_noise(
    schema_registry: RegistrySettings, catalogue: Catalogue, tmp_path: Path
) -> None:
    from infra.kafka.broker import free_port

    nowhere = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")
    env = cli_env(nowhere, schema_registry, catalogue, tmp_path)
    done = await backbone(env, "topics", "describe", "calls.results")
    assert done.returncode == 3
    line = one_error_line(done)
    assert f"cannot reach Kafka at {nowhere.bootstrap}" in line
    assert "backbone doctor" in line
    assert "KafkaConnectionError: KafkaConnectionError" not in line
