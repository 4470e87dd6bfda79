"""What a notebook gets from coach's top-level functions: `coach.fit`, `coach.check` and
`coach.autopilot` return objects that show themselves inline (`_repr_html_`: the findings first,
then the plots; the same pages `coach report` writes, each in an iframe of its own).

The run and check-result classes live below the report layer (coach.train, coach.babysit); the
subclasses here add the display, so nothing below imports the pages."""
from __future__ import annotations

import functools
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from coach.pilot import autopilot
from coach.babysit import CheckResult, check as check_
from coach.sweep import search
from coach.train import Run, fit as fit_
from coach.train.run import write_json

# the pages (matplotlib) are imported when a notebook first shows one: `import coach` stays light

__all__ = ["ShownRun", "ShownCheck", "fit", "check", "autopilot", "search"]


class ShownRun(Run):
    """A Run that a notebook shows as its report page."""

    def _repr_html_(self) -> str:
        from coach.report import render_run
        from coach.report.page import inline
        return inline(render_run(self.dir).read_text())


class ShownCheck(CheckResult):
    """A check result that a notebook shows as its page."""

    def _repr_html_(self) -> str:
        from coach.report import render_check
        from coach.report.page import inline
        with tempfile.TemporaryDirectory(prefix="coach-check-") as d:
            write_json(Path(d) / "check.json", self.to_dict())
            return inline(render_check(d).read_text())


def _shown(obj: Any, cls: type) -> Any:
    return cls(**{f.name: getattr(obj, f.name) for f in fields(obj)})


@functools.wraps(fit_)
def fit(*args: Any, **kwargs: Any) -> ShownRun:
    return _shown(fit_(*args, **kwargs), ShownRun)


@functools.wraps(check_)
def check(*args: Any, **kwargs: Any) -> ShownCheck:
    return _shown(check_(*args, **kwargs), ShownCheck)
