"""The fit loop: mini-batch SGD as the lectures draw it, and the bookkeeping that keeps
it from ever losing work.

Data live on the training device as whole tensors; a batch is an index into them
(no per-sample DataLoader collation). The order of batches is a pure function of
(seed, epoch), and every random stream (python, numpy, torch, the augmentation
generator) is in the checkpoint, so a resumed run repeats an uninterrupted one bit
for bit on the same machine.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from coach.config import Config, load_config, save_config
from coach.data import Data, Split
from coach.data.augment import Augment
from coach.errors import UserError
from coach.nn.models import CoachModel
from coach.nn.own import export_model
from coach.train.job import Job, prepare
from coach.nn.sync_batchnorm import sync_batchnorm
from coach.optim import Plateau, build_optimizer, lr_factor, penalty, split_decay
from coach.train import checkpoint as ckpt
from coach.train.callbacks import (EMA, Callback, EarlyStopping, GradClip, KeepBest, MetricsLog, ProgressBar,
                                   Snapshots, TimeBudget, Timer)
from coach.train.losses import make_loss, mixed
from coach.train.monitors import Monitor
from coach.train.predict import eval_batch_size
from coach.train.speed import Speed, autocast_dtype, plan_speed, resolve, uses_channels_last
from coach.train.tensorboard import TensorBoard
from coach.train.run import (Run, TempDir, default_run_dir, model_spec, save_predictions, save_safetensors, versions,
                             write_json)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA device is available; allowed here: cpu, auto")
    if name == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


@contextlib.contextmanager
def interrupt_flag() -> Iterator[threading.Event]:
    """First SIGINT/SIGTERM sets a flag (checkpoint at the next step boundary);
    a second SIGINT aborts at once. Nested uses chain: a search or an autopilot session that
    holds its own flag around a training run learns of the signal too, and stops after it."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set()
        outer = old.get(signum)
        if getattr(outer, "chains_interrupts", False):
            outer(signum, frame)  # type: ignore[misc, operator]

    handler.chains_interrupts = True  # type: ignore[attr-defined]

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@torch.no_grad()
def evaluate_model(model: nn.Module, split: Split, device: torch.device | str = "cpu", loss_fn: Any = None,
                   amp: torch.dtype | None = None, batch_size: int | None = None,
                   keep: list[Tensor] | None = None) -> dict[str, float]:
    """Mean loss and accuracy of model on a split, in eval mode, batched. keep: a list that
    receives the predicted classes and their probabilities (for the reports' confusion matrix)."""
    device = torch.device(device)
    batch_size = batch_size or eval_batch_size(device)
    loss_fn = loss_fn or make_loss("cross_entropy")
    was = model.training
    model.eval()
    total_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    for i in range(0, len(split), batch_size):
        x, y = split.x[i:i + batch_size].to(device), split.y[i:i + batch_size].to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            scores = model(x).float()
        total_loss += loss_fn(scores, y) * len(y)
        pred = scores.argmax(1)
        correct += (pred == y).sum()
        if keep is not None:  # the class and its probability: softmax's max is at the argmax
            keep += [pred, scores.softmax(1).amax(1)]
    model.train(was)
    n = max(len(split), 1)
    return {"loss": total_loss.item() / n, "acc": correct.item() / n}


class Trainer:
    def __init__(self, cfg: Config, data: Data, model: CoachModel, run_dir: Path, device: torch.device,
                 callbacks: list[Callback] | None = None, groups: list[dict[str, Any]] | None = None):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.data = data
        self.train_split, self.val_split = data.train.to(device), data.val.to(device)
        self.raw_model = model.to(device)
        if cfg.train.sync_batchnorm and self.world > 1:  # before the optimizer and DDP see the layers
            self.raw_model = sync_batchnorm(self.raw_model, device)
        # channels_last is resolved by fit (True/False); "auto" left unresolved means False
        self.channels_last = cfg.train.channels_last is True and uses_channels_last(self.raw_model)
        if self.channels_last:
            self.raw_model = self.raw_model.to(memory_format=torch.channels_last)
        self.model: nn.Module = nn.parallel.DistributedDataParallel(self.raw_model) if self.world > 1 \
            else self.raw_model
        # groups: explicit parameter groups (transfer learning: frozen layers left out, lr_mult per group)
        self.opt = build_optimizer(cfg.optim, groups if groups is not None else self.raw_model,
                                   cfg.regularize.decay_bias_and_norm)
        self.decay_params = split_decay(self.raw_model, cfg.regularize.decay_bias_and_norm)[0]
        self.params = [p for p in self.raw_model.parameters() if p.requires_grad]
        self.loss_fn = make_loss(cfg.train.loss, cfg.regularize.label_smoothing)
        self.eval_loss_fn = make_loss(cfg.train.loss)
        self.augment = Augment(cfg.augment, data.kind, data.train.x)
        self.gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.amp = autocast_dtype(cfg.train.precision, device)
        self.warnings: list[str] = []
        self.speed: Speed | None = None  # what fit measured to resolve precision/channels_last "auto"
        if cfg.train.precision in ("bf16", "fp16") and self.amp is None:
            # a reasonable fallback, but never a silent one: said now and kept in summary.json
            self.warnings.append(f"train.precision={cfg.train.precision} is not used on {device.type}: "
                                 f"{'fp16 with loss scaling runs on CUDA only' if cfg.train.precision == 'fp16' else 'no autocast here'}"
                                 ", so this run trains in fp32")
            if self.rank == 0:
                print(f"coach: warning: {self.warnings[-1]}", file=sys.stderr, flush=True)
        if self.world > 1 and not cfg.train.sync_batchnorm and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.raw_model.modules()):
            self.warnings.append(f"batch norm under DDP normalizes each process's share of the batch "
                                 f"({self.world} processes): train.sync_batchnorm=true uses the whole batch")
            if self.rank == 0:
                print(f"coach: warning: {self.warnings[-1]}", file=sys.stderr, flush=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.full_batch = cfg.optim.name == "lbfgs"  # L-BFGS: one step = one full-batch iteration
        self.batch_size = len(data.train) if self.full_batch else min(cfg.train.batch_size, len(data.train))
        self.per_epoch = max(len(data.train) // self.batch_size, 1)  # drop the last partial batch
        self.total_steps = cfg.train.epochs * self.per_epoch
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)
        self.eval_every = cfg.train.eval_every or self.per_epoch
        self.ckpt_every = cfg.train.checkpoint_every or self.eval_every
        self.plateau = Plateau(cfg.train.mode, cfg.schedule.factor, cfg.schedule.patience)
        self.callbacks = callbacks if callbacks is not None else default_callbacks(cfg, run_dir, self.rank)
        self.step, self.lr_scale, self.rollbacks, self.bad_run, self.skipped = 0, 1.0, 0, 0, 0
        self.eval_seconds = 0.0
        self.stop_reason: str | None = None
        self.history: list[dict[str, Any]] = []
        self.timer = Timer()
        self._perm: tuple[int, Tensor] | None = None
        self._val_pred: tuple[Tensor, Tensor] | None = None  # the last validation's classes and confidences
        self._sums = [0.0, torch.zeros((), device=device, dtype=torch.long), 0]  # loss sum, correct, count

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        self.model.train()  # evaluation restores the mode it found, so once is enough
        self._call("on_train_begin")
        if self.step == 0:
            self.save_last()  # a roll-back always has a checkpoint to return to
        with interrupt_flag() as interrupted:
            while self.step < self.total_steps and self.stop_reason is None:
                x, y = self.next_batch()  # a pure function of (seed, step): resumable
                x, y_a, y_b, lam = self.augment(x, y, self.gen) if self.augment.active else (x, y, y, 1.0)
                lr = self.set_lr()
                loss = self.train_step(x, y_a, y_b, lam)
                self.step += 1
                if loss is None:  # non-finite loss or gradients: the update was skipped
                    self.on_nonfinite()
                    continue
                self.bad_run = 0
                self._call("on_step_end", {"step": self.step, "epoch": self.step / self.per_epoch,
                                           "loss": loss, "lr": lr})
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    self.validate()
                if self.step % self.ckpt_every == 0:
                    self.save_last()
                if self.synced_flag(interrupted.is_set()) and self.stop_reason is None:
                    self.stop_reason = "interrupted"
        if not self.history or self.history[-1]["step"] != self.step:
            self.validate()  # stopped between evaluations: the summary needs final metrics
        self.save_last()
        self._call("on_train_end", self.history[-1])
        return self.finish()

    def train_step(self, x: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> float | None:
        """Forward, loss (+ regularization), backward, update. None if anything was non-finite."""
        if self.full_batch:
            return self._lbfgs_step(x, y_a)
        if self.channels_last:  # the batch in the model's layout (augmentation may have made a new tensor)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            scores = self.model(x)
            loss = self.loss_fn(scores, y_a) if lam == 1.0 else mixed(self.loss_fn, scores, y_a, y_b, lam)
        reg = penalty(self.decay_params, self.cfg.regularize.l1, self.cfg.regularize.l2)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss if reg is None else loss + reg).backward()
        self._call("on_before_optimizer_step")
        # fp16: overflowing gradients are the loss scaler's business (it skips the step and lowers
        # its scale); checking them here too would starve it of that signal
        value, finite = self.loss_and_finite(loss, grads=not self.scaler.is_enabled())
        if not finite:
            return None
        self.scaler.step(self.opt)
        self.scaler.update()
        self.track(value, scores, y_a)
        return value

    @torch.no_grad()
    def track(self, loss: float, scores: Tensor, y: Tensor) -> None:
        """Running train loss/accuracy since the last validation (the count stays on the device)."""
        self._sums[0] += loss * len(y)
        self._sums[1] += (scores.argmax(1) == y).sum()
        self._sums[2] += len(y)

    # ------------------------------------------------------------------ helpers
    def next_batch(self) -> tuple[Tensor, Tensor]:
        epoch, i = divmod(self.step, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.train_split), generator=g).to(self.device))
        idx = self._perm[1][i * self.batch_size:(i + 1) * self.batch_size]
        idx = idx[self.rank::self.world]  # DDP: each rank takes its share of the global batch
        return self.train_split.x[idx], self.train_split.y[idx]

    def set_lr(self) -> float:
        base = self.cfg.optim.lr
        lr = base * lr_factor(self.cfg.schedule, self.step, self.total_steps, self.per_epoch, base) \
            * self.lr_scale * self.plateau.scale
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def loss_and_finite(self, loss: Tensor, grads: bool = True) -> tuple[float, bool]:
        """The loss, and whether it and (grads) every gradient are finite, in one read from the
        device: a host sync per step, not two (on a GPU each one stalls the queue)."""
        checked = [loss.detach().float()]
        if grads and (g := [p.grad for p in self.params if p.grad is not None]):
            # one fused pass over all gradients; a NaN or Inf anywhere makes the sum of norms non-finite
            checked.append(torch.stack(torch._foreach_norm(g)).sum().float())
        values = torch.stack(checked).tolist()
        return values[0], all(math.isfinite(v) for v in values)

    def unscale_gradients(self) -> None:
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.opt)

    def _lbfgs_step(self, x: Tensor, y: Tensor) -> float | None:
        def closure() -> Tensor:
            self.opt.zero_grad(set_to_none=True)
            reg = penalty(self.decay_params, self.cfg.regularize.l1, self.cfg.regularize.l2)
            loss = self.loss_fn(self.model(x), y)
            (loss if reg is None else loss + reg).backward()
            return loss

        value = float(self.opt.step(closure).detach())
        if not math.isfinite(value):
            return None
        with torch.no_grad():
            self.track(value, self.model(x), y)
        return value

    def on_nonfinite(self) -> None:
        """Skip and count; K in a row: roll back to the last checkpoint with half the LR;
        after M roll-backs: stop and say why."""
        self.skipped += 1
        self.bad_run += 1
        if self.bad_run < self.cfg.train.max_nonfinite:
            return
        if self.rollbacks >= self.cfg.train.max_rollbacks:
            self.stop_reason = (
                f"diverged: the loss or gradients were non-finite {self.bad_run} steps in a row after "
                f"{self.rollbacks} roll-back(s), each halving the LR (now {self.cfg.optim.lr * self.lr_scale:.2e}). "
                "Likely causes: the learning rate is too high (try optim.lr 10x lower), a bad initialization "
                "(model.init=kaiming or xavier), or bad data (extreme or unnormalized inputs).")
            return
        rollbacks, scale, skipped = self.rollbacks + 1, self.lr_scale * 0.5, self.skipped
        self.load_state_dict(ckpt.load(self.run_dir / "checkpoints" / "last.pt"))
        self.rollbacks, self.lr_scale, self.skipped, self.bad_run = rollbacks, scale, skipped, 0

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        return evaluate_model(model, split, self.device, self.eval_loss_fn, self.amp)

    def validate(self) -> None:
        started = self.elapsed()
        loss_sum, correct, count = self._sums[0], self._sums[1].item(), self._sums[2]
        self._sums = [0.0, torch.zeros((), device=self.device, dtype=torch.long), 0]
        keep: list[Tensor] = []
        val = evaluate_model(self.raw_model, self.val_split, self.device, self.eval_loss_fn, self.amp, keep=keep)
        self._val_pred = (torch.cat(keep[0::2]), torch.cat(keep[1::2])) if keep else None
        logs = {"step": self.step, "epoch": self.step / self.per_epoch, "lr": self.opt.param_groups[0]["lr"],
                "train_loss": loss_sum / count if count else float("nan"),
                "train_acc": correct / count if count else float("nan"),
                "val_loss": val["loss"], "val_acc": val["acc"], "time": self.elapsed()}
        if self.cfg.schedule.name == "plateau":
            self.plateau.update(logs[self.cfg.train.monitor])
        self._call("on_eval_end", logs)
        self.history.append(logs)
        self.eval_seconds = self.elapsed() - started  # what the closing validation will cost (EMA's included)

    def elapsed(self) -> float:
        return self.timer()

    def synced_flag(self, flag: bool) -> bool:
        """Under DDP every rank must stop at the same step: any rank's flag stops all."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag or self.stop_reason is not None)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _call(self, event: str, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self) if logs is None else getattr(cb, event)(self, logs)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.raw_model.state_dict(), "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks, "skipped": self.skipped, "plateau": self.plateau.state_dict(),
                "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
                "rng": ckpt.rng_state(), "augment_rng": self.gen.get_state(), "elapsed": self.elapsed(),
                "train_sums": [self._sums[0], self._sums[1].item(), self._sums[2]], "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.raw_model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.lr_scale, self.rollbacks = state["step"], state["lr_scale"], state["rollbacks"]
        self.skipped = state["skipped"]
        self.plateau.load_state_dict(state["plateau"])
        for cb in self.callbacks:
            cb.load_state_dict(state["callbacks"].get(type(cb).__name__, {}))
        ckpt.set_rng_state(state["rng"])
        self.gen.set_state(state["augment_rng"].cpu())
        self.timer = Timer(state["elapsed"])
        loss_sum, correct, count = state["train_sums"]
        self._sums = [loss_sum, torch.tensor(correct, device=self.device), count]
        self.history = list(state["history"])
        self._perm = None

    def save_last(self) -> None:
        if self.rank == 0:
            ckpt.atomic_save(self.state_dict(), self.run_dir / "checkpoints" / "last.pt")

    def save_best(self, logs: dict[str, Any]) -> None:
        if self.rank == 0:
            ckpt.atomic_save({"model": self.raw_model.state_dict(), "step": self.step, "metrics": logs},
                             self.run_dir / "checkpoints" / "best.pt")

    def save_snapshot(self) -> None:
        if self.rank == 0:
            n = len(list((self.run_dir / "checkpoints" / "snapshots").glob("*.pt"))) \
                if (self.run_dir / "checkpoints" / "snapshots").exists() else 0
            ckpt.atomic_save({"model": self.raw_model.state_dict(), "step": self.step},
                             self.run_dir / "checkpoints" / "snapshots" / f"snapshot-{n + 1}.pt")

    def finish(self) -> dict[str, Any]:
        """Export weights (safetensors) and write summary.json."""
        status = "diverged" if (self.stop_reason or "").startswith("diverged") else \
            "interrupted" if self.stop_reason == "interrupted" else "completed"
        keep = next((cb for cb in self.callbacks if isinstance(cb, KeepBest)), None)
        summary = {"status": status, "stop_reason": self.stop_reason, "steps": self.step,
                   "total_steps": self.total_steps, "epochs": self.step / self.per_epoch, "time": self.elapsed(),
                   "final": self.history[-1], "best": {"monitor": self.cfg.train.monitor,
                                                       "value": keep.best if keep else None,
                                                       "step": keep.best_step if keep else None},
                   "skipped_steps": self.skipped, "rollbacks": self.rollbacks, "seed": self.cfg.seed,
                   "device": str(self.device), "world_size": self.world, "threads": torch.get_num_threads(),
                   "params": sum(p.numel() for p in self.raw_model.parameters()), "versions": versions(),
                   "val_examples": len(self.val_split), "num_classes": self.data.num_classes,
                   "speed": self.speed.to_dict() if self.speed else None, "warnings": self.warnings}
        if self.rank == 0:
            w = self.run_dir / "weights"
            save_safetensors(self.raw_model.state_dict(), w / "final.safetensors")
            best = self.run_dir / "checkpoints" / "best.pt"
            if best.exists():
                save_safetensors(ckpt.load(best)["model"], w / "best.safetensors")
            ema = next((cb for cb in self.callbacks if isinstance(cb, EMA)), None)
            if ema is not None and ema.averaged is not None:
                save_safetensors(ema.averaged.module.state_dict(), w / "ema.safetensors")
            save_safetensors(dict(self.raw_model.preprocess.state_dict()), self.run_dir / "preprocess.safetensors",
                             {"mode": getattr(self.raw_model.preprocess, "mode", "none")})
            if self._val_pred is not None:
                save_predictions(self.run_dir / "val-predictions.npz", *self._val_pred, self.val_split.y,
                                 self.val_split.x)
            write_json(self.run_dir / "summary.json", summary)
        return summary


def default_callbacks(cfg: Config, run_dir: Path, rank: int = 0) -> list[Callback]:
    t = cfg.train
    cbs: list[Callback] = []
    if t.grad_clip:
        cbs.append(GradClip(t.grad_clip))
    if t.ema:
        cbs.append(EMA(t.ema))
    if rank == 0:
        cbs += [MetricsLog(run_dir / "metrics.jsonl", t.log_every), KeepBest(t.monitor, t.mode)]
        if t.monitor_every:
            cbs.append(Monitor(run_dir / "monitors.jsonl", t.monitor_every))
        if t.progress:
            cbs.append(ProgressBar())
        if t.snapshots:
            cbs.append(Snapshots())
        if t.tensorboard:  # after Monitor: it writes the monitor's records of the same step
            cbs.append(TensorBoard(run_dir, t.log_every))
    if t.early_stopping:
        cbs.append(EarlyStopping(t.monitor, t.mode, t.early_stopping))
    if t.time_budget:
        cbs.append(TimeBudget(t.time_budget, t.fit_to_budget))
    return cbs


_defaults = default_callbacks  # fit's parameter of the same name shadows it there


def machine_speed(cfg: Config, model: nn.Module, data: Data, device: torch.device) -> Speed:
    """precision/channels_last "auto", settled: timed on this machine (coach.train.speed), except
    where a rule is enough: L-BFGS's line search wants full precision; DDP's processes would each
    time their own share and could disagree, so they take the device's usual choice."""
    if cfg.optim.name == "lbfgs":
        return Speed("fp32", False, {}, "L-BFGS: full precision for its line search")
    if dist.is_initialized():
        cuda = device.type == "cuda"
        return Speed("auto" if cuda else "fp32", cuda and uses_channels_last(model), {},
                     "under DDP: the device's usual choice, untimed")
    bs = min(cfg.train.batch_size, len(data.train))
    steps = cfg.train.epochs * max(len(data.train) // max(bs, 1), 1)
    return plan_speed(cfg, model, data, device, total_steps=min(steps, cfg.train.max_steps or steps),
                      budget=cfg.train.time_budget)


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def fit(config: Config | nn.Module | Any = None, data: Data | Any = None, *, run_dir: str | Path | None = None,
        resume: str | Path | None = None, callbacks: list[Callback] | None = None, model: nn.Module | Any = None,
        groups: list[dict[str, Any]] | None = None, default_callbacks: bool = True, **settings: Any) -> Run:
    """Train a model as the config says; returns the Run. resume: a run directory to continue.
    callbacks: added to the defaults (metrics log, best weights, and what the config asks for: grad
    clipping, EMA, early stopping, the time budget, snapshots); default_callbacks=False runs only
    `callbacks` (the config's clipping, EMA, budget... are then yours to add).
    data: a loaded Data, or data held in memory: (x, y) arrays or tensors, (x, y, x_test, y_test), a
    dict of those, a torch Dataset or DataLoader (see coach.data.memory); the run's config then
    says data.name=arrays, and unless run_dir is given the run lives in a temporary directory
    (run.save(path) keeps it).
    model: your own nn.Module (trained in place; coach's preprocessing goes in front of it in
    run.model), a function of hyperparameters that builds one (coach.nn.own), or a prebuilt
    coach model with `groups`, its optimizer parameter groups (transfer learning).
    settings: config settings by short name (epochs=10, lr=3e-3: Config.set).
    The notebook form: fit(my_module, (x, y), epochs=10), your module in place of the config."""
    _init_distributed()
    resuming = False
    if resume is not None:
        run_dir = Path(resume)
        config, resuming = resumed(run_dir)
    return train(prepare(config, data, model, settings), run_dir, resuming, callbacks, groups, default_callbacks)


def resumed(run_dir: Path) -> tuple[Config, bool]:
    """The config of the run to continue, and whether it has a checkpoint to continue from (a run
    killed before its first one starts again: nothing was lost but the start)."""
    if not (run_dir / "config.yaml").exists():
        raise UserError(f"{run_dir}: nothing to resume (no config.yaml: not a run directory)")
    if not (run_dir / "checkpoints" / "last.pt").exists():
        print(f"{run_dir}: no checkpoint yet; starting the run from the beginning", file=sys.stderr)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return load_config(run_dir / "config.yaml"), False
    return load_config(run_dir / "config.yaml"), True


def train(job: Job, run_dir: str | Path | None = None, resuming: bool = False,
          callbacks: list[Callback] | None = None, groups: list[dict[str, Any]] | None = None,
          default_callbacks: bool = True) -> Run:
    """Train the job in run_dir (a temporary folder for a job held in memory and no folder asked
    for; else runs/...), continuing its checkpoint when resuming (see fit)."""
    cfg, data = job.cfg, job.data
    assert data is not None
    keep = TempDir("coach-run-") if run_dir is None and not resuming and job.held else None
    run_dir = Path(run_dir) if run_dir is not None else keep.path if keep else default_run_dir(cfg)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if dist.is_initialized():  # every rank writes nothing but must agree on the directory
        shared = [str(run_dir)]
        dist.broadcast_object_list(shared, src=0)
        run_dir = Path(shared[0])
    ckpt.seed_everything(cfg.seed)
    device = pick_device(cfg.train.device)
    model = job.build(in_place=True)  # your module instance is trained in place (as Keras and Lightning do)
    speed = None
    if not resuming and "auto" in (cfg.train.precision, cfg.train.channels_last):
        # timed on this machine, then recorded as resolved values: a resume repeats the choice
        speed = machine_speed(cfg, model, data, device)
        cfg = resolve(cfg, speed)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_json(run_dir / "model.json", model_spec(model, data.kind, data.classes, data.input_shape,
                                                      type(model.net).__name__ if job.mine else None, data.train.x))
    cbs = (_defaults(cfg, run_dir, rank) if default_callbacks else []) + list(callbacks or [])
    trainer = Trainer(cfg, data, model, run_dir, device, cbs, groups)
    trainer.speed = speed
    if resuming:
        trainer.load_state_dict(ckpt.load(run_dir / "checkpoints" / "last.pt"))
    summary = trainer.run()
    if job.mine and rank == 0:  # the architecture too, so predict works without the user's code
        spec = json.loads((run_dir / "model.json").read_text())
        why = export_model(trainer.raw_model, data.train.x[:256], run_dir / "model.pt2")
        write_json(run_dir / "model.json", spec | {"exported": why is None, "export_error": why})
    return Run(run_dir, summary, model=trainer.raw_model, data=data, keep=keep)
