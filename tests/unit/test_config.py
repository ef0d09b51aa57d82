from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import load_settings
from streams.errors import ConfigurationError


def test_defaults_point_at_the_local_stack() -> None:
    settings = load_settings({})
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.registry.url == "http://127.0.0.1:8081"
    assert not settings.external_kafka


def test_local_port_moves_the_default_bootstrap() -> None:
    assert load_settings({"BACKBONE_KAFKA_PORT": "19092"}).kafka.bootstrap == "127.0.0.1:19092"


def test_bootstrap_names_an_external_cluster() -> None:
    settings = load_settings({"BACKBONE_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092"})
    assert settings.external_kafka
    assert settings.kafka.bootstrap == "kafka-1:9092,kafka-2:9092"


def test_config_file_is_read_and_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "backbone.toml"
    path.write_text('[kafka]\ntopic_prefix = "dev."\nclient_id = "from-file"\n')
    settings = load_settings({"BACKBONE_CONFIG": str(path), "BACKBONE_TOPIC_PREFIX": "env."})
    assert settings.kafka.topic_prefix == "env."
    assert settings.kafka.client_id == "from-file"


@pytest.mark.parametrize(
    "env",
    [
        {"BACKBONE_KAFKA_PORT": "not-a-port"},
        {"BACKBONE_CONFIG": "/nonexistent/backbone.toml"},
    ],
)
def test_bad_configuration_is_a_typed_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(env)


def test_the_worker_event_loop_is_a_setting() -> None:
    import uvloop

    from infra.cli._loops import loop_factory

    assert load_settings({}).calls.event_loop == "asyncio"
    assert loop_factory(load_settings({}).calls.event_loop) is None
    chosen = load_settings({"BACKBONE_WORKER_EVENT_LOOP": "uvloop"}).calls.event_loop
    assert loop_factory(chosen) is uvloop.new_event_loop
    with pytest.raises(ConfigurationError):
        load_settings({"BACKBONE_WORKER_EVENT_LOOP": "tokio"})


@pytest.mark.parametrize("linger", ["0", "7"])
def test_every_gateway_publisher_uses_the_gateway_linger(
    monkeypatch: pytest.MonkeyPatch, linger: str
) -> None:
    """``POST /v1/calls`` and ``/webhooks/...`` write with the gateway's producer settings, not the
    SDK's default linger (5 ms): each request waits for its acknowledgement."""
    import connectors.calls_api
    import connectors.webhooks.gateway
    from infra.stack import gateway_extensions

    seen: dict[str, int] = {}

    def capture(name: str) -> Any:
        def extension(kafka: Any, *args: Any, **kwargs: Any) -> None:
            seen[name] = kafka.linger_ms

        return extension

    monkeypatch.setattr(connectors.calls_api, "calls_extension", capture("calls"))
    monkeypatch.setattr(connectors.webhooks.gateway, "webhooks_extension", capture("webhooks"))
    settings = load_settings({"BACKBONE_GATEWAY_LINGER_MS": linger})
    assert settings.kafka.linger_ms == 5  # the SDK's default, which the gateway does not use
    gateway_extensions(settings)
    assert seen == {"calls": int(linger), "webhooks": int(linger)}
