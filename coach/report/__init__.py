"""Offline HTML reports of run directories and sweeps."""
from pathlib import Path

from coach.report.run_report import render_run
from coach.report.sweep_report import render_sweep


def render(path: str | Path) -> Path:
    """A run directory or a sweep directory, whichever path is."""
    return render_sweep(path) if (Path(path) / "sweep.json").exists() else render_run(path)


__all__ = ["render", "render_run", "render_sweep"]
