"""The alert rules as a Prometheus rules file: promtool accepts it, the committed file is current."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agents.alerts import DEFAULT_RULES, AlertKind, AlertRule
from agents.alerts.prometheus import rule_expr, rules_file
from infra.testing.system import require_program

COMMITTED = Path(__file__).parents[3] / "infra" / "prometheus" / "backbone-alerts.yml"


def _promtool_check(path: Path) -> str:
    promtool = require_program("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_committed_rules_file_is_current_and_valid() -> None:
    assert COMMITTED.read_text() == rules_file(DEFAULT_RULES), (
        "regenerate: backbone alerts prometheus --output infra/prometheus/backbone-alerts.yml"
    )
    out = _promtool_check(COMMITTED)
    assert f"SUCCESS: {len(DEFAULT_RULES)} rules found" in out


def test_per_service_rules_without_hysteresis_are_valid_too(tmp_path: Path) -> None:
    rules = [
        AlertRule(name=f"R_{kind.value}", kind=kind, raise_at=1, service="search", for_s=61.5)
        for kind in AlertKind
    ]
    path = tmp_path / "rules.yml"
    path.write_text(rules_file(rules))
    assert f"SUCCESS: {len(rules)} rules found" in _promtool_check(path)
    expr, for_s = rule_expr(rules[0])
    assert 'service="search"' in expr
    assert "ALERTS" not in expr
    assert for_s == 61.5


def test_hysteresis_keeps_a_firing_alert_until_past_resolve_at() -> None:
    rule = next(r for r in DEFAULT_RULES if r.kind is AlertKind.AVAILABILITY)
    expr, _ = rule_expr(rule)
    assert f"<= {rule.raise_at:g} or" in expr
    assert f"<= {rule.resolve_at:g}) and on (service) ALERTS" in expr
    assert f'alertname="{rule.name}",alertstate="firing"' in expr
