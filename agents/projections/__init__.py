"""The projections Backbone runs: the integration metrics (more join here), supervised."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from agents.projections.metrics import MetricsProjection
    from agents.projections.service import ProjectionService, projections
    from agents.projections.settings import ProjectionSettings

__all__ = [
    "MetricsProjection",
    "ProjectionService",
    "ProjectionSettings",
    "projections",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MetricsProjection": "agents.projections.metrics",
        "ProjectionService": "agents.projections.service",
        "projections": "agents.projections.service",
        "ProjectionSettings": "agents.projections.settings",
    },
)
