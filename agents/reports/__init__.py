"""Performance reports (``backbone report``) from the metrics windows and dead letters."""

from agents.reports._read import ReportInputs, read_inputs
from agents.reports.build import build_report
from agents.reports.render import FORMATS, render

__all__ = ["FORMATS", "ReportInputs", "build_report", "read_inputs", "render"]
