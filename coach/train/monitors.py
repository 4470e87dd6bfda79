"""Live monitors (CS231n lecture 6, "Babysitting the learning process"), sampled every N steps.

Per weight tensor: the update/weight magnitude ratio ||dW|| / ||W|| (healthy near 1e-3),
the gradient norm, the weight norm and a histogram of log10 |gradient| (fixed bins, so
layers and steps compare). Per activation layer, on a fixed probe batch in
eval mode (so training's batch-norm statistics and dropout are untouched): mean, std,
fraction exactly zero, fraction of dead units (zero for every probe input), fraction
saturated (tanh/sigmoid), and a histogram. Records go to monitors.jsonl in the run
directory. Sampling keeps the cost small (bench/monitors.py measures it).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from coach.atomic import atomic_write_bytes
from coach.nn.init_report import activation_stats, gradient_histogram
from coach.train.callbacks import Callback, Loop


class LayerMonitor:
    """The monitors on any model, driven by whoever runs the loop (coach's Trainer through the
    Monitor callback, a hand-written loop through coach.watch): call before_update() before the
    optimizer's step and after_update() after it; every `every`-th step yields a record."""

    def __init__(self, model: torch.nn.Module, probe: torch.Tensor, path: Path | None, every: int = 50):
        self.model, self.probe, self.path, self.every = model, probe, path, every
        self.records: list[dict[str, Any]] = []
        self.weights = {n: p for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad}
        self._before: dict[str, torch.Tensor] | None = None
        self._grads: dict[str, dict[str, Any]] = {}
        self._file = None

    def open(self, step: int) -> None:
        """Start writing at step (a resumed run keeps what came before its checkpoint); at step 0
        the activations at initialization are recorded, for comparison with the end."""
        if self.path is not None:
            if self.path.exists():
                kept = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
                atomic_write_bytes(self.path, "".join(ln + "\n" for ln in kept).encode())
            self._file = open(self.path, "a", buffering=1)
        if step == 0:
            self.write({"step": 0, "loss": None, "lr": None, "layers": {}, "acts": self.acts(), "nonfinite": 0})

    def acts(self) -> dict[str, Any]:
        """Activation statistics on the fixed probe batch, in eval mode (training's batch-norm
        statistics and dropout untouched)."""
        was = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        stats = activation_stats(self.model, self.probe.to(device))
        self.model.train(was)
        return {s.name: {"kind": s.kind, "mean": s.mean, "std": s.std, "zero": s.frac_zero, "dead": s.frac_dead,
                         "saturated": s.frac_saturated, "hist": s.hist, "range": list(s.hist_range)}
                for s in stats.layers}

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def before_update(self, step: int) -> None:
        """Before the optimizer's step number step+1: on sampled steps, the gradients and weights."""
        if (step + 1) % self.every:
            return
        with torch.no_grad():
            self._grads = {n: gradient_histogram(p.grad if p.grad is not None else torch.zeros_like(p))
                           for n, p in self.weights.items()}
            self._before = {n: p.detach().clone() for n, p in self.weights.items()}

    def after_update(self) -> dict[str, Any] | None:
        """After that step: per layer, the update/weight ratio and the gradient's statistics, and the
        activations (None on steps that are not sampled)."""
        if self._before is None:
            return None
        layers = {}
        with torch.no_grad():
            for n, p in self.weights.items():
                w = self._before[n].norm().item()
                g = self._grads.get(n, {})
                layers[n] = {"update_ratio": (p.detach() - self._before[n]).norm().item() / max(w, 1e-12),
                             "grad_norm": g.get("norm", 0.0), "weight_norm": w,
                             "grad_hist": g.get("hist"), "grad_range": g.get("range"), "grad_zero": g.get("zero")}
        self._before = None
        nonfinite = sum(not math.isfinite(v["update_ratio"]) for v in layers.values())
        return {"layers": layers, "acts": self.acts(), "nonfinite": nonfinite}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Monitor(Callback):
    """The monitors in coach's own fit loop."""

    def __init__(self, path: Path | None, every: int = 50, probe_size: int = 128):
        self.path, self.every, self.probe_size = path, every, probe_size
        self.core: LayerMonitor | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.core.records if self.core is not None else []

    def on_train_begin(self, t: Loop) -> None:
        self.core = LayerMonitor(t.raw_model, t.train_split.x[: self.probe_size], self.path, self.every)
        self.core.open(t.step)

    def on_before_optimizer_step(self, t: Loop) -> None:
        self.core.before_update(t.step)

    def on_step_end(self, t: Loop, logs: dict[str, Any]) -> None:
        record = self.core.after_update()
        if record is not None:
            self.core.write({"step": t.step, "loss": logs["loss"], "lr": logs["lr"], **record})

    def on_train_end(self, t: Loop, logs: dict[str, Any]) -> None:
        self.core.close()
