"""Callbacks: small objects with a few no-op hooks (Keras' design, with fewer events).

Events, in the order the fit loop calls them:
  on_train_begin(t)                 once, after model/optimizer exist (and after resume)
  on_before_optimizer_step(t)       gradients are ready (gradient clipping needs it)
  on_step_end(t, logs)              logs: step, epoch, loss, lr
  on_eval_end(t, logs)              logs: + train_loss, train_acc, val_loss, val_acc, time
  on_train_end(t, logs)

`t` is the loop that runs the callback (`Loop`: what a callback may read and call; coach's
Trainer is one). A callback stops training by setting t.stop_reason. Anything stateful has
state_dict()/load_state_dict(), so checkpoints hold it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from coach.atomic import atomic_write_bytes
from coach.config import Config
from coach.data import Data, Split
from coach.fmt import interactive, seconds, sig
from coach.optim import cycle_end


class Loop(Protocol):
    """What a callback sees of the loop that runs it (coach's Trainer is one); the callbacks
    depend on this, not on the Trainer."""

    cfg: Config
    run_dir: Path
    data: Data
    train_split: Split
    raw_model: nn.Module  # the model itself (model: the one the loop calls, DDP-wrapped or not)
    model: nn.Module
    callbacks: list["Callback"]
    history: list[dict[str, Any]]
    step: int
    total_steps: int
    per_epoch: int
    world: int
    eval_seconds: float
    stop_reason: str | None

    def elapsed(self) -> float: ...
    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]: ...
    def save_best(self, logs: dict[str, Any]) -> None: ...
    def save_snapshot(self) -> None: ...
    def unscale_gradients(self) -> None: ...


class Callback:
    def on_train_begin(self, t: Loop) -> None: ...
    def on_before_optimizer_step(self, t: Loop) -> None: ...
    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None: ...
    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, t: Loop, logs: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def epoch_line(t: Loop, logs: dict[str, Any]) -> str:
    line = (f"epoch {sig(logs['epoch'])}/{sig(t.total_steps / t.per_epoch)}  train loss {sig(logs['train_loss'])} "
            f"acc {sig(logs['train_acc'])}  val loss {sig(logs['val_loss'])} acc {sig(logs['val_acc'])}")
    if "ema_val_acc" in logs:
        line += f" (EMA {sig(logs['ema_val_acc'])})"
    return line + f"  lr {sig(logs['lr'])}  {seconds(logs['time'])}"


class ProgressBar(Callback):
    """Progress a person can follow anywhere: in a terminal or a notebook, a tqdm bar over steps
    with a line per validation written above it; in a pipe, a CI log or a file, only the plain
    line per validation (a bar redrawn into a log is noise)."""

    def __init__(self, bar: bool | None = None):
        self.want_bar = interactive() if bar is None else bar
        self.bar = None

    def on_train_begin(self, t: Loop) -> None:
        if self.want_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=t.total_steps, initial=t.step, unit="step", dynamic_ncols=True, leave=False)

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.total = t.total_steps  # a time budget may have re-planned it
            self.bar.update(1)
            if t.step % 20 == 0:
                self.bar.set_postfix(loss=sig(logs["loss"]), lr=sig(logs["lr"]), refresh=False)

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.write(epoch_line(t, logs))
        else:
            print(epoch_line(t, logs), flush=True)

    def on_train_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()


class MetricsLog(Callback):
    """Appends JSON lines to metrics.jsonl: a 'step' record every `every` steps and an
    'eval' record at each validation. On resume, lines after the checkpoint are dropped
    (they will be written again), so the log matches an uninterrupted run."""

    def __init__(self, path: Path, every: int = 20):
        self.path, self.every = Path(path), every
        self.file = None

    def on_train_begin(self, t: Loop) -> None:
        if self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if (r := _record(ln)) and r["step"] <= t.step]
            atomic_write_bytes(self.path, "".join(ln + "\n" for ln in kept).encode())
        self.file = open(self.path, "a", buffering=1)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.file is not None
        self.file.write(json.dumps(record) + "\n")

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if t.step % self.every == 0:
            self._write({"type": "step", **logs})

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        self._write({"type": "eval", **logs})

    def on_train_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.close()


def _record(line: str) -> dict[str, Any] | None:
    """One metrics line, or None for a line torn by a kill in the middle of its write."""
    try:
        return json.loads(line) if line else None
    except json.JSONDecodeError:
        return None


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop after `patience` validations without improvement of `monitor` (explicit mode)."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.bad = 0

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        value = logs[self.monitor]
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                t.stop_reason = f"early stopping: {self.monitor} did not improve for {self.patience} evaluations"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], state["bad"]


class KeepBest(Callback):
    """Keep the checkpoint that was best on validation (the lectures: always keep it). A tie on
    the monitored metric is broken by the validation loss (`tiebreak`): once validation accuracy
    saturates (1.0 on a small split) every later checkpoint ties, and the first of them is
    rarely the best model (its loss can be 50x the last one's)."""

    def __init__(self, monitor: str, mode: str, tiebreak: str = "val_loss"):
        self.monitor, self.mode, self.tiebreak = monitor, mode, tiebreak
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_tiebreak: float | None = None

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        value, second = logs[self.monitor], logs.get(self.tiebreak)
        tied = self.best is not None and value == self.best and second is not None and \
            self.tiebreak != self.monitor and improved(second, self.best_tiebreak, "min")
        if improved(value, self.best, self.mode) or tied:
            self.best, self.best_step, self.best_tiebreak = value, t.step, second
            t.save_best(logs)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "best_tiebreak": self.best_tiebreak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.best_tiebreak = state.get("best_tiebreak")


class GradClip(Callback):
    """Clip the global gradient norm (Pascanu et al. 2013)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def on_before_optimizer_step(self, t: Loop) -> None:
        t.unscale_gradients()
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), self.max_norm)


class EMA(Callback):
    """Polyak / exponential moving average of the weights (and batch-norm buffers),
    torch.optim.swa_utils underneath. Evaluated beside the raw weights at each validation."""

    def __init__(self, decay: float):
        self.decay = decay
        self.averaged: AveragedModel | None = None
        self._pending: dict[str, Any] | None = None

    def on_train_begin(self, t: Loop) -> None:
        self.averaged = AveragedModel(t.raw_model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        if self._pending is not None:
            self.averaged.load_state_dict(self._pending)

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        assert self.averaged is not None
        self.averaged.update_parameters(t.raw_model)

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        assert self.averaged is not None
        ema = t.evaluate(self.averaged.module, t.data.val)
        logs["ema_val_loss"], logs["ema_val_acc"] = ema["loss"], ema["acc"]

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict() if self.averaged is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.averaged is not None and state:  # a roll-back mid-run
            self.averaged.load_state_dict(state)
        else:  # resume: the averaged copy is made in on_train_begin
            self._pending = state or None


class TimeBudget(Callback):
    """Stop once the run (all its sessions, resumed ones included) has used `seconds`.

    fit=True also fits the schedule's horizon to the budget (Li et al. 2020, "budgeted
    training": a schedule must end where the budget does): the steps affordable at the pace
    so far are projected, and the run's total steps become that (never more than planned),
    so a decaying LR reaches its end within the budget instead of being cut off half-way.
    The horizon is re-planned at steps 8, 16, 32, ... until the first validation (so a plan
    of many epochs does not spend the first one warming up for a horizon it will never
    reach) and at every validation after. Early paces include start-up, so the horizon may
    grow back as the estimate improves. Both keep the time of the closing validation (as the
    last one took). Single process only (DDP ranks would disagree)."""

    def __init__(self, seconds: float, fit: bool = False):
        self.seconds, self.fit = seconds, fit
        self.total: int | None = None
        self.planned = 0

    def on_train_begin(self, t: Loop) -> None:
        self.planned = t.total_steps  # from the config, on a resume too
        if self.total is not None:  # resumed: keep the fitted horizon
            t.total_steps = min(t.total_steps, self.total)

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        # the run ends within its budget, the closing validation included (its cost as last measured)
        if t.elapsed() + t.eval_seconds >= self.seconds:
            t.stop_reason = f"time budget of {self.seconds:.0f}s used"
        elif not t.history and t.step >= 8 and t.step & (t.step - 1) == 0:
            self.replan(t, margin=0.9)  # no validation yet: its cost is unknown, plan short

    def on_eval_end(self, t: Loop, logs: dict[str, Any]) -> None:
        self.replan(t, margin=0.98)  # 2% margin for the end

    def replan(self, t: Loop, margin: float) -> None:
        used = t.elapsed()
        if not self.fit or t.world > 1 or t.step == 0 or used <= 0:
            return
        affordable = t.step + int((self.seconds - t.eval_seconds - used) * t.step / used * margin)
        t.total_steps = self.total = min(self.planned, max(affordable, t.step + 1))

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state.get("total")


class StepClock(Callback):
    """Wall-clock time at the end of every step: step times without the trainer's own timing."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        self.times.append(time.perf_counter())

    def gaps(self, skip: int = 0) -> list[float]:
        """Seconds between consecutive steps, after the first `skip` (warm-up) steps."""
        return [b - a for a, b in zip(self.times[skip:], self.times[skip + 1:])]


class Snapshots(Callback):
    """Snapshot ensembles (Huang et al. 2017): save the weights at the end of every cosine
    cycle of schedule.name=cyclic, into checkpoints/snapshots/."""

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        if cycle_end(t.cfg.schedule, t.step - 1, t.total_steps):
            t.save_snapshot()


class Timer:
    """Wall time of this session plus what earlier sessions of the run had used."""

    def __init__(self, already: float = 0.0):
        self.already, self.start = already, time.perf_counter()

    def __call__(self) -> float:
        return self.already + time.perf_counter() - self.start
