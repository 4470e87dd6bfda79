"""Offline HTML reports of run directories, sweeps and check results."""
from pathlib import Path

from coach.folders import kind_of
from coach.report.check_report import render_check
from coach.report.run_report import render_run
from coach.report.sweep_report import render_sweep


def render(path: str | Path) -> Path:
    """A run directory, a sweep directory or a `coach check --out` folder, whichever path is
    (coach.folders.kind_of; an autopilot session's page is coach.pilot.page's)."""
    kind = kind_of(path)
    return {"sweep": render_sweep, "check": render_check}.get(kind, render_run)(Path(path))


__all__ = ["render", "render_check", "render_run", "render_sweep"]
