"""The projections Backbone runs: the integration metrics (more join here), supervised."""

from __future__ import annotations

from agents.projections.metrics import MetricsProjection
from agents.projections.service import ProjectionService, projections, supervise
from agents.projections.settings import ProjectionSettings

__all__ = [
    "MetricsProjection",
    "ProjectionService",
    "ProjectionSettings",
    "projections",
    "supervise",
]
