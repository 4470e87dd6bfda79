"""Learning-rate schedules as pure functions of the step (CS231n lecture 7, "Learning rate decay").

`lr_factor(cfg, step, total, per_epoch)` returns the multiplier on the base LR at
`step` of `total` steps, with `per_epoch` steps per epoch. Nothing is stored, so a
resumed run gets the same LR as an uninterrupted one. The lectures: try no decay
first; decay is a second-order hyperparameter.

  constant     1
  step         gamma ** floor(epoch / step_epochs)
  multistep    gamma ** (number of milestones passed); milestones are fractions of training
  exponential  gamma ** epoch (continuous)
  inverse_time 1 / (1 + decay * epoch)                      (the lectures' 1/t)
  cosine       from 1 down to min_lr over training          (Loshchilov & Hutter 2017)
  linear       from 1 down to min_lr over training
  onecycle     cosine up from 1/25 to 1 over pct_start, then down to 1/(25e4) (Smith 2018)
  cyclic       `cycles` cosine cycles with warm restarts (SGDR); `cycle_end` marks the
               last step of each cycle, where snapshot ensembles take a snapshot
  plateau      1 here; ReduceLROnPlateau's factor is applied by the trainer from metrics

warmup (steps, or a fraction of training if < 1) multiplies any of them by a linear
ramp from 0 to 1 (Goyal et al. 2017).
"""
from __future__ import annotations

import math
from typing import Callable

from coach.config import SCHEDULES, ScheduleConfig


def _cos(t: float) -> float:
    """1 -> 0 along half a cosine as t goes 0 -> 1."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


Schedule = Callable[[ScheduleConfig, int, int, int, float], float]


def _reg(name: str) -> Callable[[Schedule], Schedule]:
    return SCHEDULES.register(name)


@_reg("constant")
def constant(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return 1.0


@_reg("plateau")
def plateau(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return 1.0


@_reg("step")
def step_decay(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return c.gamma ** math.floor(step / per_epoch / c.step_epochs + 1e-9)


@_reg("multistep")
def multistep(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return c.gamma ** sum(step >= round(m * total) for m in c.milestones)


@_reg("exponential")
def exponential(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return c.gamma ** (step / per_epoch)


@_reg("inverse_time")
def inverse_time(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return 1.0 / (1.0 + c.decay * step / per_epoch)


@_reg("cosine")
def cosine(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return floor + (1.0 - floor) * _cos(step / max(total, 1))


@_reg("linear")
def linear(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    return 1.0 - (1.0 - floor) * min(step / max(total, 1), 1.0)


@_reg("onecycle")
def onecycle(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    start, end = 1.0 / 25.0, 1.0 / 25.0 / 1e4
    rise = c.pct_start * total - 1
    if step <= rise:
        return 1.0 + (start - 1.0) * _cos(step / max(rise, 1))
    return end + (1.0 - end) * _cos((step - rise) / max(total - 1 - rise, 1))


def cycle_length(c: ScheduleConfig, total: int) -> int:
    return max(total // c.cycles, 1)


@_reg("cyclic")
def cyclic(c: ScheduleConfig, step: int, total: int, per_epoch: int, floor: float) -> float:
    length = cycle_length(c, total)
    return floor + (1.0 - floor) * _cos((step % length) / length)


def cycle_end(c: ScheduleConfig, step: int, total: int) -> bool:
    """True at the last step of each cosine cycle (where SGDR restarts)."""
    return c.name == "cyclic" and (step + 1) % cycle_length(c, total) == 0


def lr_factor(c: ScheduleConfig, step: int, total: int, per_epoch: int, base_lr: float = 1.0) -> float:
    """Multiplier on the base LR at step (0-based) of total."""
    floor = c.min_lr / base_lr if base_lr > 0 else 0.0
    factor = SCHEDULES.get(c.name, "schedule.name")(c, step, total, max(per_epoch, 1), floor)
    warm = c.warmup * total if 0 < c.warmup < 1 else c.warmup
    if warm > 0 and step < warm:
        factor *= (step + 1) / (warm + 1)
    return factor


class Plateau:
    """ReduceLROnPlateau's rule on an explicit mode: multiply the LR by `factor` after
    `patience` evaluations without improvement. Stateful, so it checkpoints."""

    def __init__(self, mode: str, factor: float, patience: int, threshold: float = 1e-4):
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.best: float | None = None
        self.bad = 0
        self.scale = 1.0

    def update(self, value: float) -> float:
        better = self.best is None or (value < self.best * (1 - self.threshold) if self.mode == "min"
                                       else value > self.best * (1 + self.threshold))
        if better:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.scale *= self.factor
                self.bad = 0
        return self.scale

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad, self.scale = state["best"], state["bad"], state["scale"]
