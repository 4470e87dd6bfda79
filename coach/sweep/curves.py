"""Learning-curve extrapolation: where a run of a given length will end, from shorter runs
(Domhan, Springenberg & Hutter, IJCAI 2015; Klein et al., ICLR 2017).

The points are *complete* runs: each trained with its schedule decayed to zero within its
own length ("budgeted training", Li, Yumer & Ramanan, ICLR 2020), so the value at length L
is what a run of length L ends at, not a truncated run's middle. The law is the one most
learning curves follow (Domhan's "pow3"):

    value(L) = a + b * L**(-c)

a is where the curve levels off, b how far the short runs are from it, c how fast it gets
there. With one fixed exponent the law is linear in (a, b), so it is fitted by least squares
and its prediction is a weighted sum of the measured values, which carries their noise
through to the prediction (`Extrapolation.se`). With two lengths the exponent is the prior
(PRIOR_EXPONENT, an error falling as 1/sqrt(L)); with three or more it is chosen from a grid
by the residuals. A long extrapolation from close lengths multiplies the noise: the standard
error says so, and the decisions built on it (coach.pilot.decide) respect it.

Everything here is a pure function of the numbers given: tested on synthetic curves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PRIOR_EXPONENT = 0.5
EXPONENTS = tuple(np.round(np.arange(0.2, 2.01, 0.1), 2))  # the grid a 3+ point fit chooses from


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    c: float

    def __call__(self, length: float) -> float:
        return self.a + self.b * length ** -self.c


@dataclass(frozen=True)
class Extrapolation:
    """The predicted value at `length` and its standard error (from the measured values' own)."""
    length: float
    value: float
    se: float
    law: PowerLaw


def _design(lengths: Sequence[float], c: float) -> np.ndarray:
    return np.stack([np.ones(len(lengths)), np.asarray(lengths, dtype=float) ** -c], axis=1)


def prediction_weights(lengths: Sequence[float], target: float, c: float) -> np.ndarray:
    """w such that the least-squares law's value at `target` is w @ values (fixed exponent c)."""
    x = _design(lengths, c)
    return _design([target], c)[0] @ np.linalg.pinv(x)


def best_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """The grid exponent whose law fits the points best (the prior with fewer than three lengths)."""
    if len(set(lengths)) < 3:
        return PRIOR_EXPONENT
    v = np.asarray(values, dtype=float)

    def residual(c: float) -> float:
        x = _design(lengths, c)
        coef = np.linalg.lstsq(x, v, rcond=None)[0]
        return float(np.sum((x @ coef - v) ** 2))

    return min(EXPONENTS, key=residual)


def fit(lengths: Sequence[float], values: Sequence[float], c: float | None = None) -> PowerLaw:
    if len(lengths) != len(values) or len(set(lengths)) < 2 or min(lengths) <= 0:
        raise ValueError("fit: at least two distinct positive lengths, one value each")
    c = best_exponent(lengths, values) if c is None else c
    a, b = np.linalg.lstsq(_design(lengths, c), np.asarray(values, dtype=float), rcond=None)[0]
    return PowerLaw(float(a), float(b), float(c))


def extrapolate(lengths: Sequence[float], values: Sequence[float], target: float,
                ses: Sequence[float] | None = None, c: float | None = None) -> Extrapolation:
    """The value a complete run of `target` length would end at. ses: each value's standard
    error (e.g. binomial on the validation split), carried through the fit's weights."""
    law = fit(lengths, values, c)
    w = prediction_weights(lengths, target, law.c)
    se = math.sqrt(float(np.sum((w * np.asarray(ses, dtype=float)) ** 2))) if ses is not None else 0.0
    return Extrapolation(target, float(w @ np.asarray(values, dtype=float)), se, law)


def binomial_se(rate: float, n: int) -> float:
    """Standard error of an error (or accuracy) rate measured on n examples."""
    p = min(max(rate, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(n, 1))
