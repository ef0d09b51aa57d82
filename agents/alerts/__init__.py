"""Alerts: rules over the integration metrics, evaluated into ``monitoring.alerts``.

:mod:`agents.alerts.rules` (configuration), :class:`AlertBook` (the evaluation as plain code),
:class:`AlertService` (the running evaluator), :mod:`agents.alerts.prometheus` (the same rules for
Prometheus).
"""

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
