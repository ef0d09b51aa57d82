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
