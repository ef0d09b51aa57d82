"""Settings checked against each other (issue 12.4): the rebalance drain covers the longest call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.retry import RetryPolicy, due_too_late
from agents.settings import WorkerSettings
from connectors.settings import ServiceSettings
from infra.config import load_settings
from streams.errors import ConfigurationError


def test_the_defaults_drain_longer_than_the_default_call_timeout() -> None:
    settings = WorkerSettings()
    assert settings.drain_timeout_s >= settings.default_timeout_s + 5


def test_a_drain_shorter_than_the_longest_call_is_refused_naming_what_to_set() -> None:
    with pytest.raises(ValidationError, match=r"set it to at least 43\.75"):
        WorkerSettings(rebalance_timeout_s=20.0)  # the old default: 16 s < 30 s + 5 s
    slow = ServiceSettings(name="slow", kind="http", timeout_s=60.0)
    with pytest.raises(ValidationError, match=r"longest call timeout \(60 s\)"):
        WorkerSettings(services=(slow,))
    assert WorkerSettings(services=(slow,), rebalance_timeout_s=90).longest_call_timeout_s == 60


def test_the_configuration_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "backbone.toml"
    config.write_text("[calls]\nrebalance_timeout_s = 20\n")
    with pytest.raises(ConfigurationError) as raised:
        load_settings({"BACKBONE_CONFIG": str(config)})
    message = str(raised.value)
    assert "\n" not in message
    assert "calls.rebalance_timeout_s = 20" in message
    assert "at least 43.75" in message


def test_a_due_time_beyond_the_tier_horizon_is_poison() -> None:
    policy = RetryPolicy(delays_s=(1.0, 2.0), max_delay_s=100.0, due_margin_s=10.0)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert due_too_late(now + timedelta(seconds=110), 1, policy, now) is None
    assert due_too_late(None, 1, policy, now) is None
    why = due_too_late(datetime(9999, 1, 1, tzinfo=UTC), 2, policy, now)
    assert why is not None
    assert "retry tier 2" in why


def test_prefetch_and_batch_tunables_are_settings_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "backbone.toml"
    config.write_text(
        "[calls]\nrouter_prefetch = 300\nrouter_batch = 100\nretry_prefetch = 40\nretry_batch = 4\n"
        "[webhooks.delivery]\nconcurrency = 8\nbatch = 16\nfetch_wait_ms = 5\n"
    )
    settings = load_settings({"BACKBONE_CONFIG": str(config)})
    calls = settings.calls
    assert (calls.router_prefetch, calls.router_batch) == (300, 100)
    assert (calls.retry_prefetch, calls.retry_batch) == (40, 4)
    delivery = settings.webhooks.delivery
    assert (delivery.in_hand, delivery.batch_size, delivery.fetch_wait_ms) == (32, 16, 5)
    defaults = WorkerSettings()
    assert (defaults.router_prefetch, defaults.router_batch) == (2000, 500)


@pytest.mark.parametrize(
    ("section", "text", "expected"),
    [
        ("calls", "lane_prefetch = 4\nlane_batch = 8", "calls.lane_batch = 8 is larger"),
        ("calls", "router_batch = 2001", "calls.router_batch = 2001 is larger"),
        ("calls", "retry_prefetch = 0", "retry_prefetch"),
        ("webhooks.delivery", "prefetch = 10\nbatch = 11", "webhooks.delivery.batch = 11"),
        ("webhooks.delivery", 'fetch_wait_ms = "soon"', "fetch_wait_ms"),
    ],
)
def test_bad_tunables_are_refused_in_one_line_naming_the_setting(
    tmp_path: Path, section: str, text: str, expected: str
) -> None:
    config = tmp_path / "backbone.toml"
    config.write_text(f"[{section}]\n{text}\n")
    with pytest.raises(ConfigurationError) as raised:
        load_settings({"BACKBONE_CONFIG": str(config)})
    assert "\n" not in str(raised.value)
    assert expected in str(raised.value)
