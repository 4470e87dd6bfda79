"""coach.watch: the babysitter inside a training loop you wrote yourself.

    with coach.watch(model, optimizer, out="runs/mine") as w:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            w.step(loss)
        w.evaluate(val_acc=..., val_loss=...)      # optional, e.g. once per epoch
    print(w.findings)                              # the curve diagnosis, as for coach's own runs

It observes; it changes nothing in the loop. The loss and LR of every step go to
metrics.jsonl; every `every` steps (optimizer hooks around optimizer.step()) the monitors
sample the update/weight ratio and gradient histogram of each weight and the activations on
a fixed probe batch (the first `probe_size` inputs the model saw, unless `probe` is given),
into monitors.jsonl. On leaving the block the curves are diagnosed (lr_too_high, lr_too_low,
nonfinite, plateau, bad_init, dead units, saturation; overfitting and underfitting when
`evaluate` was given accuracies) and, with `out`, written as a run folder with report.html,
which `coach report` re-renders. The config in that folder is what coach could read off
the optimizer (its kind, LR, weight decay, whether the LR changed), not one that rebuilds
the model: the model is yours.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from coach.babysit.diagnose import diagnose
from coach.babysit.findings import Finding, merged
from coach.babysit.userbugs import Inspector, batch_dependence, diagnose_loop
from coach.config import OPTIMIZERS, Config, save_config
from coach.errors import UserError
from coach.train.monitors import LayerMonitor
from coach.train.run import write_json


class Watch:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, out: str | Path | None = None,
                 every: int = 50, probe: Tensor | None = None, probe_size: int = 128,
                 num_classes: int | None = None, closure: bool = False):
        """closure: the loop computes the gradients inside optimizer.step(closure) (Lightning, L-BFGS),
        so the optimizer's step pre-hook comes before them; the caller then calls before_update()
        once they exist (Lightning's on_before_optimizer_step)."""
        if not isinstance(model, nn.Module):
            raise UserError(f"coach.watch: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise UserError(f"coach.watch: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if every < 1:
            raise UserError(f"coach.watch: every={every}; it must be a whole number of steps >= 1")
        self.model, self.optimizer, self.every, self.probe_size = model, optimizer, every, probe_size
        self.out = Path(out) if out is not None else None
        self.num_classes = num_classes
        self.probe = probe
        self.steps, self.metrics, self.findings = 0, [], []
        self.lrs: set[float] = set()
        self.monitor: LayerMonitor | None = None
        self._pending: dict[str, Any] | None = None
        self._hooks: list[Any] = []
        self._start = time.perf_counter()
        self._metrics_file = None
        self.closure = closure
        # the bugs of a hand-written loop (coach.babysit.userbugs): evidence from hooks that only read
        self.inspector = Inspector(model, optimizer, every, closure)
        self.batch_finding: Finding | None = None
        self._batch_checked = False

    # ------------------------------------------------------------------ the block
    def __enter__(self) -> "Watch":
        if self.out is not None:
            if (self.out / "metrics.jsonl").exists():
                raise UserError(f"{self.out}: already holds a run; give coach.watch a new folder")
            self.out.mkdir(parents=True, exist_ok=True)
            self._metrics_file = open(self.out / "metrics.jsonl", "a", buffering=1)
        self.inspector.attach()
        if not self.closure:
            self._hooks.append(self.optimizer.register_step_pre_hook(lambda *_: self.before_update()))
        self._hooks.append(self.optimizer.register_step_post_hook(lambda *_: self._after_update()))
        if self.probe is None:  # the first inputs the model sees become the fixed probe batch
            self._grab = self.model.register_forward_pre_hook(self._grab_probe)
            self._hooks.append(self._grab)
        else:
            self._start_monitor(self.probe)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inspector.detach()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self.monitor is not None:
            self.monitor.close()
        if self._metrics_file is not None:
            self._metrics_file.close()
        self.findings = self.diagnose()
        if self.out is not None:
            self._write_run()

    # ------------------------------------------------------------------ the loop's calls
    def step(self, loss: Tensor | float) -> None:
        """After optimizer.step(): the step's training loss (a tensor or a number)."""
        self.steps += 1
        self.inspector.read_loss(loss, self.steps)
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.lrs.add(lr)
        self._log({"type": "step", "step": self.steps, "loss": value, "lr": lr,
                   "time": time.perf_counter() - self._start})
        if self._pending is not None and self.monitor is not None:
            self.monitor.write({"step": self.steps, "loss": value, "lr": lr, **self._pending})
            self._pending = None

    def evaluate(self, **metrics: float) -> None:
        """Validation (and training) metrics now, e.g. evaluate(val_acc=0.91, val_loss=0.3,
        train_acc=0.95, val_examples=1000): with accuracies the diagnosis also judges over- and
        underfitting, and a final accuracy no better than guessing (with val_examples, within
        the noise of chance; without, at most 10% over 1/C)."""
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float))]
        if bad:
            raise UserError(f"coach.watch evaluate: {bad} must be numbers")
        self._log({"type": "eval", "step": self.steps, "epoch": len(self.evals) + 1.0, **metrics,
                   "time": time.perf_counter() - self._start})

    @property
    def evals(self) -> list[dict[str, Any]]:
        return [m for m in self.metrics if m["type"] == "eval"]

    # ------------------------------------------------------------------ hooks
    def _grab_probe(self, module: nn.Module, args: tuple) -> None:
        if self.monitor is None and args and isinstance(args[0], Tensor):
            self._grab.remove()  # once: no hook left on the model's forward for the rest of the loop
            self._start_monitor(args[0][: self.probe_size].detach().clone())

    def _start_monitor(self, probe: Tensor) -> None:
        self.monitor = LayerMonitor(self.model, probe, self.out / "monitors.jsonl" if self.out else None, self.every)
        # the probe's forward must not see its own hook; activations at "init" = when watching began
        with torch.no_grad():
            self.monitor.open(0)

    def before_update(self) -> None:
        """The gradients are in place and the update is next (sampled steps read them now)."""
        if self.closure:  # otherwise the inspector's own step pre-hook has run
            self.inspector.before_step()
        if not self._batch_checked and self.monitor is not None:
            # once, at the first step (outside any forward): do examples in a batch depend on each other?
            self._batch_checked = True
            self.inspector.paused = True
            try:
                self.batch_finding = batch_dependence(self.model, self.monitor.probe)
            finally:
                self.inspector.paused = False
        if self.monitor is not None:
            self.monitor.before_update(self.steps)

    def _after_update(self) -> None:
        if self.monitor is not None:
            self._pending = self.monitor.after_update()

    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        if self._metrics_file is not None:
            self._metrics_file.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ the verdict
    def config(self) -> Config:
        """What coach can read off the optimizer, as a config (for the diagnosis and the report)."""
        g = self.optimizer.param_groups[0]
        name = type(self.optimizer).__name__.lower()
        if name == "sgd":
            name = "nesterov" if g.get("nesterov") else "momentum" if g.get("momentum") else "sgd"
        if name not in OPTIMIZERS:
            name = "sgd"
        lrs = [m["lr"] for m in self.metrics if m["type"] == "step"]
        return Config.model_validate({
            "data": {"name": "arrays"}, "model": {"name": "module"},  # the model is yours (coach.nn.own)
            # an LR of 0 (a loop that learns nothing on purpose, or by a bug) is not a config value
            "optim": {"name": name, "lr": max(lrs[0] if lrs else g["lr"], 1e-12),
                      "weight_decay": g.get("weight_decay", 0.0)},
            # a changing LR is not "constant"; step decay is the closest registered name
            "schedule": {"name": "constant" if len(self.lrs) <= 1 else "step"}})

    def summary(self) -> dict[str, Any]:
        losses = [m["loss"] for m in self.metrics if m["type"] == "step"]
        nonfinite = sum(not math.isfinite(v) for v in losses)
        evals = self.evals
        final = {k: v for k, v in evals[-1].items() if k != "type"} if evals else {}
        return {"steps": self.steps, "status": "diverged" if losses and not math.isfinite(losses[-1]) else "finished",
                "stop_reason": "the loss became non-finite" if losses and not math.isfinite(losses[-1]) else None,
                "skipped_steps": nonfinite, "final": final, "time": time.perf_counter() - self._start,
                "watched": True, "num_classes": self.num_classes,
                # the diagnosis judges chance within the noise of n examples; unknown, a narrow band over 1/C
                "val_examples": final.get("val_examples") or chance_band(self.num_classes)}

    def diagnose(self) -> list[Finding]:
        """The curves' diagnosis, as for coach's own runs, with the loop's own bugs first: a bug
        explains the symptoms the curves show (a missing zero_grad looks like an LR too high)."""
        monitors = self.monitor.records if self.monitor is not None else []
        losses = [m["loss"] for m in self.metrics if m["type"] == "step"]
        bugs = diagnose_loop(self.inspector.ev, losses, self.epoch_steps()) + \
            ([self.batch_finding] if self.batch_finding else [])
        curves = diagnose(self.config(), self.metrics, self.summary(), monitors, self.num_classes)
        if bugs:  # the symptoms a bug causes are not separate causes: the bug first, they follow as remarks
            return merged(bugs) + [f for f in curves if f.code == "at_chance"] + \
                [Finding(f.code, "info", f.message, f.advice, f.evidence) for f in curves if f.code != "at_chance"]
        return curves

    def epoch_steps(self) -> int | None:
        """Steps between the first two evaluations: an epoch, when evaluate is called once an epoch."""
        evals = self.evals
        return evals[0]["step"] if evals and evals[0]["step"] > 0 else None

    def _write_run(self) -> None:
        from coach.report import render_run

        assert self.out is not None
        save_config(self.config(), self.out / "config.yaml")
        write_json(self.out / "summary.json", self.summary())
        write_json(self.out / "model.json", {"watched": type(self.model).__name__, "num_classes": self.num_classes,
                                             "classes": [str(i) for i in range(self.num_classes or 0)],
                                             "kind": "unknown", "input_shape": list(self._probe_shape())})
        render_run(self.out)

    def _probe_shape(self) -> tuple[int, ...]:
        return tuple(self.monitor.probe.shape[1:]) if self.monitor is not None else ()


def chance_band(num_classes: int | None) -> int | None:
    """The number of validation examples whose 3-standard-error band over chance is 10% of 1/C
    (used when the loop does not say how many it validated on)."""
    if not num_classes:
        return None
    c = 1.0 / num_classes
    return math.ceil(9 * c * (1 - c) / (0.1 * c) ** 2)


def watch(model: nn.Module, optimizer: torch.optim.Optimizer, out: str | Path | None = None, every: int = 50,
          probe: Tensor | None = None, num_classes: int | None = None) -> Watch:
    """Watch a hand-written training loop (see the module's docstring): `with coach.watch(model,
    optimizer, out=...) as w: ... w.step(loss)`; w.findings after the block."""
    return Watch(model, optimizer, out, every, probe, num_classes=num_classes)
