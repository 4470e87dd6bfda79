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
from typing import TYPE_CHECKING, Any

import torch

from coach.nn.init_report import activation_stats, gradient_histogram
from coach.train.callbacks import Callback

if TYPE_CHECKING:
    from coach.train.loop import Trainer


class Monitor(Callback):
    def __init__(self, path: Path | None, every: int = 50, probe_size: int = 128):
        self.path, self.every, self.probe_size = path, every, probe_size
        self.records: list[dict[str, Any]] = []
        self._before: dict[str, torch.Tensor] | None = None
        self._grads: dict[str, dict[str, Any]] = {}
        self._file = None

    def on_train_begin(self, t: "Trainer") -> None:
        self.probe = t.train_split.x[: self.probe_size]
        self.weights = {n: p for n, p in t.raw_model.named_parameters() if p.ndim >= 2 and p.requires_grad}
        if self.path is not None:
            if self.path.exists():  # resumed: keep what came before the checkpoint
                kept = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= t.step]
                self.path.write_text("".join(ln + "\n" for ln in kept))
            self._file = open(self.path, "a", buffering=1)
        if t.step == 0:  # the activations at initialization, for comparison with the end
            self._write({"step": 0, "loss": None, "lr": None, "layers": {}, "acts": self._acts(t), "nonfinite": 0})

    def _acts(self, t: "Trainer") -> dict[str, Any]:
        model = t.raw_model
        was = model.training
        model.eval()
        stats = activation_stats(model, self.probe.to(t.device))
        model.train(was)
        return {s.name: {"kind": s.kind, "mean": s.mean, "std": s.std, "zero": s.frac_zero, "dead": s.frac_dead,
                         "saturated": s.frac_saturated, "hist": s.hist, "range": list(s.hist_range)}
                for s in stats.layers}

    def _write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def on_before_optimizer_step(self, t: "Trainer") -> None:
        if (t.step + 1) % self.every:
            return
        with torch.no_grad():
            self._grads = {n: gradient_histogram(p.grad if p.grad is not None else torch.zeros_like(p))
                           for n, p in self.weights.items()}
            self._before = {n: p.detach().clone() for n, p in self.weights.items()}

    def on_step_end(self, t: "Trainer", logs: dict[str, Any]) -> None:
        if self._before is None:
            return
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
        self._write({"step": t.step, "loss": logs["loss"], "lr": logs["lr"], "layers": layers, "acts": self._acts(t),
                     "nonfinite": nonfinite})

    def on_train_end(self, t: "Trainer", logs: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.close()
