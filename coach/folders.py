"""Which kind of coach folder a path is, answered in one place: every command that reads a
folder takes any of them (a run, a sweep, an autopilot session, a check result)."""
from __future__ import annotations

from pathlib import Path

from coach.errors import UserError

KINDS = ("session", "sweep", "run", "check")


def kind_of(path: str | Path) -> str:
    """session (autopilot: state.json), sweep (sweep.json), run (config.yaml + model.json) or
    check (check.json); a clear error for anything else."""
    p = Path(path)
    if (p / "state.json").exists():
        return "session"
    if (p / "sweep.json").exists():
        return "sweep"
    if (p / "config.yaml").exists() and (p / "model.json").exists():
        return "run"
    if (p / "check.json").exists():
        return "check"
    if not p.exists():
        raise UserError(f"{p}: no such folder")
    raise UserError(f"{p}: not a coach folder (a run holds config.yaml and model.json, a sweep sweep.json, "
                    "an autopilot session state.json, a check result check.json)")
