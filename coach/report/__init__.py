"""Offline HTML reports of run directories (and, later, sweeps and autopilot sessions)."""
from coach.report.run_report import render_run

__all__ = ["render_run"]
