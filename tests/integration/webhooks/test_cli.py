"""``backbone webhooks ...`` against the real broker and registry."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from infra.cli import main
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

pytestmark = pytest.mark.integration


def test_endpoint_commands(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
    }
    cli = CliRunner()

    def backbone(*args: str) -> object:
        result = cli.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    added = backbone(
        "webhooks",
        "endpoints",
        "add",
        "https://hooks.example.com/x",
        "--event-type",
        "call.succeeded",
        "--header",
        "X-Team=research",
        "--rate-limit",
        "3",
        "--json",
    )
    assert isinstance(added, dict)
    assert added["secret"].startswith("whsec_")
    endpoint_id = added["endpoint_id"]
    listed = backbone("webhooks", "endpoints", "list", "--json")
    assert isinstance(listed, list)
    assert [(e["endpoint_id"], e["headers"]) for e in listed] == [
        (endpoint_id, {"X-Team": "research"})
    ]
    rotated = backbone("webhooks", "endpoints", "rotate", endpoint_id, "--grace", "1h", "--json")
    assert isinstance(rotated, dict)
    assert rotated["secret"] not in (added["secret"], None)
    disabled = backbone(
        "webhooks", "endpoints", "disable", endpoint_id, "--reason", "partner asked", "--json"
    )
    assert isinstance(disabled, dict)
    assert disabled["disabled_reason"] == "partner asked"
    assert backbone("webhooks", "attempts", "--endpoint", endpoint_id, "--json") == []
    assert (
        backbone(
            "webhooks", "recover", "--endpoint", endpoint_id, "--since", "1h", "--dry-run", "--json"
        )
        == []
    )


def test_item17_cli_normalises_and_guards_urls_like_the_api(
    kafka_settings: KafkaSettings, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    """Issue 10 item 17: the CLI stored URLs as typed (the API normalises them)."""
    env = {
        "BACKBONE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "BACKBONE_SCHEMA_REGISTRY_URL": schema_registry.url,
        "BACKBONE_TOPIC_PREFIX": catalogue.prefix,
    }
    cli = CliRunner()
    added = cli.invoke(
        main,
        ["webhooks", "endpoints", "add", "HTTPS://Hooks.Example.COM", "--json"],
        env=env,
        catch_exceptions=False,
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["url"] == "https://hooks.example.com/"
    unsafe = cli.invoke(
        main, ["webhooks", "endpoints", "add", "http://169.254.169.254/", "--json"], env=env
    )
    assert unsafe.exit_code != 0
    assert "unsafe destination" in unsafe.output
