"""Offline HTML reports of run directories, sweeps and check results."""
from pathlib import Path

from coach.report.check_report import render_check
from coach.report.run_report import render_run
from coach.report.sweep_report import render_sweep


def render(path: str | Path) -> Path:
    """A run directory, a sweep directory or a `coach check --out` folder, whichever path is."""
    p = Path(path)
    if (p / "sweep.json").exists():
        return render_sweep(p)
    if (p / "check.json").exists() and not (p / "model.json").exists():
        return render_check(p)
    return render_run(p)


__all__ = ["render", "render_check", "render_run", "render_sweep"]
