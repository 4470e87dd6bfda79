"""Numbers and times for people: what every command prints and every report shows.

  sig(0.005546722693816289)  -> '0.00555'   (3 significant digits; no float noise)
  sig(0.9174)                -> '0.917'
  sig(1.5e-07)               -> '1.5e-07'   (scientific when tiny or huge)
  seconds(125.4)             -> '2m 05s'
  params({'optim.lr': 0.005546722693816289}) -> 'optim.lr=0.00555'
"""
from __future__ import annotations

import math
import sys
from typing import Any


def interactive() -> bool:
    """A person watching a redrawn bar: a terminal on stderr, or a notebook (tqdm.auto draws a widget).
    Otherwise (a pipe, a CI log, a file) progress is plain lines, never a bar redrawn into a log."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def sig(x: Any, digits: int = 3) -> str:
    """x with `digits` significant digits; integers, bools and text as they are."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 10 ** digits <= abs(x) < 1e9:
        return f"{x:.0f}"  # 12346, not 1.23e+04
    return f"{x:.{digits}g}"


def seconds(s: float) -> str:
    """A duration as a person reads it: '45s', '2m 05s', '1h 03m'."""
    if not math.isfinite(s):
        return str(s)
    s = max(s, 0.0)
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def params(p: dict[str, Any]) -> str:
    """Hyperparameters as KEY=VALUE with people's numbers, in a stable order."""
    return " ".join(f"{k}={sig(v)}" for k, v in p.items())

