from __future__ import annotations

import json

import pytest

from infra.config import load_settings
from streams.errors import ConfigurationError


def test_webhook_settings_from_environment() -> None:
    settings = load_settings(
        {
            "BACKBONE_WEBHOOK_SOURCES": json.dumps(
                {"github": {"scheme": "github", "secrets": ["s3cret"]}}
            ),
            "BACKBONE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128",
            "BACKBONE_WEBHOOK_RETRY_DELAYS": "0.5,1,2",
        }
    )
    source = settings.webhooks.ingress.sources["github"]
    assert source.scheme == "github"
    assert source.secrets[0].get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.webhooks.delivery.allow_networks == ("127.0.0.0/8", "::1/128")
    assert settings.webhooks.delivery.retry_delays_s == (0.5, 1.0, 2.0)


def test_defaults_are_svix_and_closed() -> None:
    delivery = load_settings({}).webhooks.delivery
    assert delivery.retry_delays_s == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert delivery.allow_networks == ()
    assert delivery.timeout_s == 15


@pytest.mark.parametrize(
    "env",
    [
        {"BACKBONE_WEBHOOK_SOURCES": "{not json"},
        {"BACKBONE_WEBHOOK_SOURCES": json.dumps({"Bad/Name": {"secrets": ["x"]}})},
        {"BACKBONE_WEBHOOK_ALLOW_NETWORKS": "not-a-network"},
        {"BACKBONE_WEBHOOK_RETRY_DELAYS": "1,2,3,4,5,6,7,8"},
    ],
)
def test_bad_webhook_settings(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(env)
