"""Lock the public surface of the calls layers: changing it is a deliberate act."""

from __future__ import annotations

import agents
import connectors
import connectors.plugins
import connectors.resilience


def test_exports() -> None:
    assert sorted(agents.__all__) == [
        "Lane", "LanePicker", "RetryDecision", "RetryPolicy", "Verdict",
        "WorkerSettings", "after_failure",
    ]  # fmt: skip
    assert sorted(connectors.__all__) == [
        "CallInput", "CallOutput", "Connector", "CostModel", "Credential", "Credentials",
        "Health", "RefreshingCredentials", "ServiceSettings", "StaticCredentials", "Usage",
        "available", "build",
    ]  # fmt: skip
    assert "CircuitBreaker" in connectors.resilience.__all__
    assert "PluginConnector" in connectors.plugins.__all__
