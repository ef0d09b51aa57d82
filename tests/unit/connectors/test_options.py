"""Typed connector options (issue 12, section 4): TOML numbers work, wrong options are one line."""

from __future__ import annotations

import pytest

from connectors.http_json import HttpJsonConnector
from connectors.options import InvalidOptionsError
from connectors.plugins.connector import PluginConnector
from connectors.settings import ServiceSettings
from connectors.simulated import SimulatedProvider


def _service(kind: str, **options: object) -> ServiceSettings:
    return ServiceSettings.model_validate({"name": "sim", "kind": kind, "options": options})


def test_toml_numbers_and_strings_both_work() -> None:
    """``latency_s = 0.01`` was refused ("Input should be a valid string")."""
    typed = SimulatedProvider(_service("simulated", latency_s=0.01, error_rate=0, seed=7))
    assert typed.latency_s == 0.01
    assert typed.error_rate == 0.0
    quoted = SimulatedProvider(_service("simulated", latency_s="0.01"))
    assert quoted.latency_s == 0.01


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        ("simulated", {"latency_s": "soon"}, "option 'latency_s' expects a number, got 'soon'"),
        ("simulated", {"error_rate": 2}, "option 'error_rate' expects a number, got 2"),
        ("simulated", {"latncy_s": 1}, "unknown option 'latncy_s'"),
        ("http", {"retriable_statuses": "5xx"}, "option 'retriable_statuses' expects a string"),
        ("plugin", {}, "option 'path' is required"),
        ("plugin", {"path": "p.py", "memory_mb": "lots"}, "option 'memory_mb' expects an integer"),
    ],
)
def test_a_wrong_option_is_one_line_naming_service_option_and_type(
    kind: str, options: dict[str, object], expected: str
) -> None:
    factory = {"simulated": SimulatedProvider, "http": HttpJsonConnector, "plugin": PluginConnector}
    with pytest.raises(InvalidOptionsError) as caught:
        factory[kind](_service(kind, **options))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"service 'sim' ({kind}): ")
    assert expected in message


def test_http_options_are_typed() -> None:
    connector = HttpJsonConnector(
        _service("http", method="get", retriable_statuses="503, 429", health_path="/ping")
    )
    assert connector._method == "GET"
    assert connector._retriable == frozenset({503, 429})
