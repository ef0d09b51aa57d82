"""``monitoring.alerts`` folded into the alerts it records: what fired, what is still firing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from streams.events import Event
from streams.events.monitoring import AlertRaised, AlertResolved


@dataclass(frozen=True)
class AlertRecord:
    raised: AlertRaised
    resolved: AlertResolved | None = None

    @property
    def firing(self) -> bool:
        return self.resolved is None

    def firing_at(self, at: datetime) -> bool:
        """Raised at or before ``at`` and not resolved by then."""
        if self.raised.occurred_at > at:
            return False
        return self.resolved is None or self.resolved.occurred_at > at

    def as_dict(self) -> dict[str, Any]:
        raised = self.raised
        return {
            "alert_id": raised.alert_id,
            "rule": raised.rule,
            "severity": raised.severity.value,
            "service": raised.service,
            "subject": raised.labels.get("subject", raised.service),
            "state": "firing" if self.firing else "resolved",
            "raised_at": raised.occurred_at.isoformat(),
            "resolved_at": self.resolved.occurred_at.isoformat() if self.resolved else None,
            "value": raised.value,
            "threshold": raised.threshold,
            "summary": raised.summary,
        }


class AlertLog:
    """A fold of ``monitoring.alerts``; applying an event twice changes nothing."""

    def __init__(self) -> None:
        self.records: dict[str, AlertRecord] = {}
        self.event_ids: set[UUID] = set()
        self._early: dict[str, AlertResolved] = {}  # a resolution read before its raise

    def apply(self, event: Event) -> None:
        if event.event_id in self.event_ids:
            return
        self.event_ids.add(event.event_id)
        if isinstance(event, AlertRaised):
            self.records[event.alert_id] = AlertRecord(event, self._early.pop(event.alert_id, None))
        elif isinstance(event, AlertResolved):
            record = self.records.get(event.alert_id)
            if record is None:
                self._early[event.alert_id] = event
            else:
                self.records[event.alert_id] = AlertRecord(record.raised, event)

    def firing(self) -> list[AlertRecord]:
        return [r for r in self.sorted() if r.firing]

    def firing_at(self, at: datetime) -> list[AlertRecord]:
        return [r for r in self.sorted() if r.firing_at(at)]

    def sorted(self) -> list[AlertRecord]:
        return sorted(
            self.records.values(), key=lambda r: (r.raised.occurred_at, r.raised.alert_id)
        )
