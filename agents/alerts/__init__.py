"""Alerts: rules over the integration metrics, evaluated into ``monitoring.alerts``.

:mod:`agents.alerts.rules` (configuration), :class:`AlertBook` (the evaluation as plain code),
:class:`AlertService` (the running evaluator), :mod:`agents.alerts.prometheus` (the same rules for
Prometheus).
"""

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from agents.alerts._book import (
        AlertBook,
        OpenWindow,
        Reading,
        Track,
        alert_id_of,
        figures_value,
        step,
        window_value,
    )
    from agents.alerts._lag import consumer_lag
    from agents.alerts._log import AlertLog, AlertRecord
    from agents.alerts.rules import DEFAULT_RULES, AlertKind, AlertRule, AlertSettings
    from agents.alerts.service import AlertService, read_alert_log

__all__ = [
    "DEFAULT_RULES",
    "AlertBook",
    "AlertKind",
    "AlertLog",
    "AlertRecord",
    "AlertRule",
    "AlertService",
    "AlertSettings",
    "OpenWindow",
    "Reading",
    "Track",
    "alert_id_of",
    "consumer_lag",
    "figures_value",
    "read_alert_log",
    "step",
    "window_value",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AlertBook": "agents.alerts._book",
        "OpenWindow": "agents.alerts._book",
        "Reading": "agents.alerts._book",
        "Track": "agents.alerts._book",
        "alert_id_of": "agents.alerts._book",
        "figures_value": "agents.alerts._book",
        "step": "agents.alerts._book",
        "window_value": "agents.alerts._book",
        "consumer_lag": "agents.alerts._lag",
        "AlertLog": "agents.alerts._log",
        "AlertRecord": "agents.alerts._log",
        "DEFAULT_RULES": "agents.alerts.rules",
        "AlertKind": "agents.alerts.rules",
        "AlertRule": "agents.alerts.rules",
        "AlertSettings": "agents.alerts.rules",
        "AlertService": "agents.alerts.service",
        "read_alert_log": "agents.alerts.service",
    },
)
