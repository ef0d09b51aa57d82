"""Gateway client handling as pure logic: tokens, token buckets, settings parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from connectors.gateway._clients import BearerTokens, ClientLimits
from connectors.gateway._ingest import batch_status
from connectors.gateway.settings import GatewaySettings
from connectors.resilience import RateLimit, TokenBucket
from infra.config import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bearer_tokens_map_to_clients() -> None:
    tokens = BearerTokens({"alpha": SecretStr("a-token"), "beta": SecretStr("b-token")})
    assert tokens.client("Bearer a-token") == "alpha"
    assert tokens.client("bearer b-token") == "beta"
    assert tokens.client("Bearer wrong") is None
    assert tokens.client("Basic a-token") is None
    assert tokens.client("Bearer ") is None
    assert tokens.client(None) is None


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(rate=2.0, burst=3), clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.take() == 0.0
    assert bucket.take() > 0


def test_limits_are_per_client() -> None:
    limits = ClientLimits(rate=1.0, burst=1, clock=Clock())
    assert limits.wait_for("a") == 0.0
    assert limits.wait_for("a") > 0
    assert limits.wait_for("b") == 0.0


def test_tokens_come_from_the_environment_as_secrets() -> None:
    settings = load_settings(
        {"BACKBONE_GATEWAY_TOKENS": "alpha=t1, beta=t2", "BACKBONE_GATEWAY_PORT": "9999"}
    )
    assert settings.gateway.port == 9999
    assert {c: t.get_secret_value() for c, t in settings.gateway.tokens.items()} == {
        "alpha": "t1",
        "beta": "t2",
    }
    assert "t1" not in repr(settings.gateway)


def test_malformed_tokens_are_refused() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(tokens="alpha")


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ([202, 202], 202),
        ([202, 400], 207),
        ([503, 202], 207),
        ([400, 400], 400),
        ([400, 503], 503),
        ([422], 400),
    ],
)
def test_batch_status_follows_the_lines(lines: list[int], status: int) -> None:
    assert batch_status(lines) == status


def test_gateway_settings_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "backbone.toml"
    path.write_text('[gateway]\nport = 9000\nrate_per_s = 5\n[gateway.tokens]\nalpha = "t1"\n')
    settings = load_settings({"BACKBONE_CONFIG": str(path), "BACKBONE_GATEWAY_PORT": "9001"})
    assert settings.gateway.port == 9001  # the environment wins
    assert settings.gateway.rate_per_s == 5
    assert settings.gateway.tokens["alpha"].get_secret_value() == "t1"
