"""Alert rules from the configuration file and the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.alerts import DEFAULT_RULES, AlertKind
from connectors.webhooks.settings import DeliverySettings
from infra.config import load_settings
from streams.errors import ConfigurationError

TOML = """
[alerts]
lookback_s = 7200

[[alerts.rules]]
name = "SearchErrors"
kind = "error_rate"
service = "search"
raise_at = 0.2
resolve_at = 0.1
for_s = 60
severity = "critical"

[[alerts.rules]]
name = "Budget"
kind = "cost_per_hour"
raise_at = 3
"""


def test_defaults_cover_every_kind() -> None:
    rules = load_settings({}).alerts.rules
    assert rules == DEFAULT_RULES
    assert {r.kind for r in rules} == set(AlertKind)


def test_rules_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "backbone.toml"
    path.write_text(TOML)
    alerts = load_settings({"BACKBONE_CONFIG": str(path)}).alerts
    assert alerts.lookback_s == 7200
    first, second = alerts.rules
    assert (first.name, first.service, first.clear_at, first.severity.value) == (
        "SearchErrors",
        "search",
        0.1,
        "critical",
    )
    assert second.service is None
    assert second.clear_at == 3


def test_rules_from_the_environment_win() -> None:
    rules = [{"name": "Lag", "kind": "consumer_lag", "raise_at": 5, "service": "backbone-calls"}]
    alerts = load_settings(
        {"BACKBONE_ALERTS_RULES": json.dumps(rules), "BACKBONE_ALERTS_LOOKBACK_S": "60"}
    ).alerts
    assert [r.name for r in alerts.rules] == ["Lag"]
    assert alerts.lookback_s == 60


@pytest.mark.parametrize(
    "rules",
    [
        "not json",
        json.dumps([{"name": "x", "kind": "nonsense", "raise_at": 1}]),
        json.dumps([{"name": "x", "kind": "error_rate", "raise_at": 0.1, "resolve_at": 0.5}]),
        json.dumps([{"name": "x", "kind": "error_rate", "raise_at": 1}] * 2),
    ],
)
def test_bad_rules_are_refused_by_name(rules: str) -> None:
    with pytest.raises(ConfigurationError):
        load_settings({"BACKBONE_ALERTS_RULES": rules})


def test_alerts_are_offered_to_webhook_endpoints_by_default() -> None:
    assert "monitoring.alerts" in DeliverySettings().source_topics
