"""The search space: a `search:` section of dotted config keys and distributions.

    search:
      optim.lr: loguniform(1e-4, 1e-1)       # the lectures: learning rate and regularization in log space
      optim.weight_decay: loguniform(1e-6, 1e-2)
      regularize.dropout: uniform(0.0, 0.5)
      model.width: int(16, 128)
      model.activation: choice([relu, elu, tanh])
      train.batch_size: grid([64, 128])

Expressions are parsed, never evaluated. Narrowing (coarse-to-fine) works in the space a
range is sampled in: log space for loguniform (and int ranges marked log).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import yaml

from coach.config import Config
from coach.errors import UserError

_EXPR = re.compile(r"^\s*(loguniform|uniform|int|logint|choice|grid)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Dim:
    key: str
    kind: str  # loguniform | uniform | int | logint | choice | grid
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "logint")

    @property
    def numeric(self) -> bool:
        return self.kind in ("loguniform", "uniform", "int", "logint")

    def to_unit(self, v: float) -> float:
        """Position of v in [low, high] in the sampling space (0..1)."""
        lo, hi, x = (math.log(self.low), math.log(self.high), math.log(v)) if self.log else (self.low, self.high, v)
        return (x - lo) / (hi - lo) if hi > lo else 0.5

    def from_unit(self, u: float) -> float:
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        x = lo + u * (hi - lo)
        return math.exp(x) if self.log else x

    def describe(self) -> str:
        if self.numeric:
            return f"{self.kind}({self.low:g}, {self.high:g})"
        return f"{self.kind}({list(self.values)})"


def parse_dim(key: str, expr: Any) -> Dim:
    where = f"search.{key}"
    if isinstance(expr, list):
        expr = f"choice({expr})"
    m = _EXPR.match(str(expr))
    if not m:
        raise UserError(f"{where}: {expr!r} is not a distribution; use loguniform(a, b), uniform(a, b), int(a, b), "
                        "logint(a, b), choice([...]) or grid([...])")
    kind, body = m.group(1), m.group(2)
    if kind in ("choice", "grid"):
        try:
            args = yaml.safe_load(f"[{body}]")
        except yaml.YAMLError:
            raise UserError(f"{where}: cannot read the values of {expr!r}") from None
        values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        if not values:
            raise UserError(f"{where}: {kind} needs at least one value")
        return Dim(key, kind, values=tuple(values))
    try:  # plain floats: YAML would read 1e-4 as a string
        low, high = (float(a) for a in body.split(","))
    except ValueError:
        raise UserError(f"{where}: {kind} needs two numbers, low and high; got {body!r}") from None
    if not low < high:
        raise UserError(f"{where}: empty or inverted range ({low:g}, {high:g}); low must be below high")
    if kind in ("loguniform", "logint") and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got {low:g}")
    if kind in ("int", "logint") and (low != int(low) or high != int(high)):
        raise UserError(f"{where}: int ranges need whole numbers, got ({low:g}, {high:g})")
    return Dim(key, kind, low, high)


def parse_space(search: dict[str, Any], base: Config) -> list[Dim]:
    """Parse and check every dimension, including that its key exists in the config."""
    if not search:
        raise UserError("search: the config has no search: section (e.g. search: {optim.lr: loguniform(1e-4, 1e-1)})")
    dims = [parse_dim(k, v) for k, v in search.items()]
    for d in dims:
        sample = d.values[0] if not d.numeric else (int(d.low) if d.kind in ("int", "logint") else d.low)
        try:
            base.replace(**{d.key: sample})
        except UserError as e:
            raise UserError(f"search.{d.key}: not a usable config key or value ({str(e).splitlines()[-1].strip()})") \
                from None
    return dims


def narrow(dim: Dim, good: list[Any], best: Any, margin: float = 0.25, min_span: float = 0.35) -> tuple[Dim, str | None]:
    """Coarse-to-fine: shrink dim around the good trials' values (sampling space), with a
    margin; if the best value sits at an edge of the range, widen past that edge instead.
    Returns the new dim and a note when it was widened."""
    if not dim.numeric:
        kept = tuple(v for v in dim.values if v in good) or dim.values
        return replace(dim, values=kept), None
    units = [dim.to_unit(v) for v in good]
    lo_u, hi_u = min(units), max(units)
    span = hi_u - lo_u
    lo_u, hi_u = lo_u - margin * span, hi_u + margin * span
    if hi_u - lo_u < min_span:  # never narrower than min_span of the old range: the top trials are noisy
        mid = (lo_u + hi_u) / 2
        lo_u, hi_u = mid - min_span / 2, mid + min_span / 2
    note = None
    b = dim.to_unit(best)
    if b <= 0.1:
        lo_u, note = min(lo_u, -0.5), f"{dim.key}: the best value {best:g} is at the low edge; widened below"
    elif b >= 0.9:
        hi_u, note = max(hi_u, 1.5), f"{dim.key}: the best value {best:g} is at the high edge; widened above"
    else:
        lo_u, hi_u = max(lo_u, 0.0), min(hi_u, 1.0)
    low, high = dim.from_unit(lo_u), dim.from_unit(hi_u)
    if dim.kind in ("int", "logint"):
        low, high = max(1.0 if dim.log else -math.inf, math.floor(low)), math.ceil(high)
        if high <= low:
            high = low + 1
    if dim.kind == "uniform" and dim.low >= 0:
        low = max(low, 0.0)  # a probability or a strength does not go negative
    return replace(dim, low=float(low), high=float(high)), note


def grid_points(dim: Dim, per_dim: int) -> list[Any]:
    """Grid search's values: the listed ones, or `per_dim` evenly spaced points (log-spaced for log ranges)."""
    if not dim.numeric:
        return list(dim.values)
    pts = [min(max(dim.from_unit(i / max(per_dim - 1, 1)), dim.low), dim.high) for i in range(per_dim)]
    return sorted({int(round(p)) for p in pts}) if dim.kind in ("int", "logint") else pts


def quasi_random(dims: list[Dim], n: int, seed: int = 0, first: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """n points of a scrambled Sobol sequence over dims (the Tuning Playbook's quasi-random
    search: random search's coverage without its clumps and gaps, so few points still span
    each range). Numeric ranges are filled in their sampling space (log for log ranges). A
    choice is stratified: the points, in the order of their coordinate, take its values in
    turn, those other than `first[key]` (the value already tried) first, so few points still
    cover every value."""
    if n <= 0 or not dims:
        return []
    import warnings

    from scipy.stats import qmc

    with warnings.catch_warnings():  # Sobol prefers powers of two; balance is still better than random
        warnings.simplefilter("ignore")
        units = qmc.Sobol(len(dims), scramble=True, seed=seed).random(n)
    points: list[dict[str, Any]] = [{} for _ in range(n)]
    for j, d in enumerate(dims):
        if d.numeric:
            for p, row in zip(points, units):
                v = d.from_unit(float(row[j]))
                p[d.key] = int(round(v)) if d.kind in ("int", "logint") else v
            continue
        tried = (first or {}).get(d.key, object())
        order = [v for v in d.values if v != tried] + [v for v in d.values if v == tried]
        for rank, i in enumerate(sorted(range(n), key=lambda i: units[i][j])):
            points[i][d.key] = order[rank % len(order)]
    return points


def too_few_trials(finished: int, dims: int) -> bool:
    """The rule the autopilot plans by and the command center warns by: a search decides
    its dimensions only with at least 3 finished trials per searched dimension."""
    return finished < 3 * max(dims, 1)
