"""Per-layer activation statistics at initialization (CS231n lecture 6, "Weight Initialization").

The lectures' demo: a deep tanh net with W ~ N(0, 0.01^2) sees its activations shrink
towards zero layer after layer (gradients vanish); with N(0, 1) every unit saturates at
+-1 (gradients vanish too); Xavier keeps the spread roughly constant. With ReLU,
Xavier halves the variance per layer and Kaiming keeps it. `init_report` measures
exactly that for any model: mean, std, fraction exactly zero and fraction saturated of
every activation layer's output, plus a histogram for plotting.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from coach.nn.activations import ACTIVATION_TYPES
from coach.nn.layers import (
    DropConnectLinear,
    FractionalMaxPool,
    SpatialDropout,
    StochasticDepth,
)

STOCHASTIC = (nn.modules.dropout._DropoutNd, SpatialDropout, DropConnectLinear, StochasticDepth, FractionalMaxPool)


def saturated_fraction(module: nn.Module, out: Tensor) -> float | None:
    """|tanh| > 0.99, sigmoid < 0.01 or > 0.99; None where saturation is not defined."""
    if isinstance(module, nn.Tanh):
        return (out.abs() > 0.99).float().mean().item()
    if isinstance(module, nn.Sigmoid):
        return ((out < 0.01) | (out > 0.99)).float().mean().item()
    return None


def dead_fraction(zero: Tensor) -> float:
    """Fraction of units (dim 1) that are zero (zero: a boolean mask) for every sample and position."""
    if zero.dim() < 2:
        return 0.0
    per_unit = zero.transpose(0, 1).reshape(zero.shape[1], -1)
    return per_unit.all(dim=1).float().mean().item()


@dataclass
class LayerStats:
    name: str
    kind: str
    mean: float
    std: float
    frac_zero: float
    frac_saturated: float | None
    frac_dead: float = 0.0  # units (channels) that output exactly zero for every input in the batch
    hist: list[int] = field(default_factory=list)
    hist_range: tuple[float, float] = (0.0, 0.0)


@dataclass
class InitReport:
    layers: list[LayerStats]

    def stds(self) -> list[float]:
        return [layer.std for layer in self.layers]

    def __str__(self) -> str:
        w = max([len(s.name) for s in self.layers] + [5])
        lines = [f"{'layer':<{w}}  {'kind':<9} {'mean':>10} {'std':>10} {'zero':>6} {'saturated':>9}"]
        for s in self.layers:
            sat = "-" if s.frac_saturated is None else f"{s.frac_saturated:.1%}"
            lines.append(f"{s.name:<{w}}  {s.kind:<9} {s.mean:>10.3g} {s.std:>10.3g} {s.frac_zero:>6.1%} {sat:>9}")
        return "\n".join(lines)


@torch.no_grad()
def init_report(model: nn.Module, batch: Tensor, bins: int = 40) -> InitReport:
    """Forward one batch through a copy of model (training-mode batch norm, stochastic
    layers off) and record every activation layer's output statistics, in forward order."""
    return activation_stats(noise_free(copy.deepcopy(model)), batch, bins)


def noise_free(model: nn.Module) -> nn.Module:
    """Training mode without the noise (in place): the stochastic layers off, batch norm still on
    batch statistics (at initialization its running statistics say nothing yet)."""
    model.train()
    for mod in model.modules():
        if isinstance(mod, STOCHASTIC):
            # the layer's own flag only: .eval() would also put the batch norms inside a
            # stochastic-depth branch on their (meaningless, at init) running statistics
            mod.training = False
    return model


# Gradient histograms are of log10 |g| over fixed half-decade bins, the same for every layer and
# every step, so layers and moments compare at a glance (a raw-value histogram per layer has its
# own scale, and a vanishing layer's 1e-9 looks like anyone else's 1e-2).
GRAD_LOG10_RANGE = (-12.0, 2.0)
GRAD_BINS = 28


@torch.no_grad()
def gradient_histogram(grad: Tensor) -> dict[str, object]:
    """Histogram of log10 |g| (values outside the range land in the end bins), the fraction
    of exact zeros (no log), and the gradient's norm."""
    g = grad.detach().float().abs().flatten()
    nonzero = g[g > 0]
    lo, hi = GRAD_LOG10_RANGE
    logs = nonzero.log10().clamp(lo, hi - 1e-6) if nonzero.numel() else nonzero
    hist = torch.histc(logs, bins=GRAD_BINS, min=lo, max=hi) if logs.numel() else torch.zeros(GRAD_BINS)
    return {"hist": [int(v) for v in hist.tolist()], "range": [lo, hi],
            "zero": 1 - nonzero.numel() / max(g.numel(), 1), "norm": float(g.norm()),
            "median_log10": float(logs.median()) if logs.numel() else None}


def gradient_stats(model: nn.Module, loss: Tensor) -> dict[str, dict[str, object]]:
    """One backward pass of loss; the gradient histogram of every weight tensor (ndim >= 2),
    by parameter name. The model's .grad fields are left as they were."""
    weights = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in weights], allow_unused=True)
    return {n: gradient_histogram(g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(weights, grads)}


@torch.no_grad()
def activation_stats(m: nn.Module, batch: Tensor, bins: int = 40) -> InitReport:
    """Statistics of every activation layer's output for one forward pass of m as it is
    (its current train/eval mode; no copy, so the caller chooses the side effects)."""
    rows: list[LayerStats] = []

    def hook(name: str):
        def record(module: nn.Module, _inp: tuple, out: Tensor) -> None:
            o = out.detach().float()
            std, mean = torch.std_mean(o)  # NaN when the weights are: that is the evidence
            lo_t, hi_t = torch.aminmax(o)
            finite = o
            if not (torch.isfinite(lo_t) and torch.isfinite(hi_t)):  # the rare case: mask (costly) only then
                finite = o[torch.isfinite(o)]  # histogram what is left: a diverged net must not crash it
                lo_t, hi_t = torch.aminmax(finite) if finite.numel() else (torch.tensor(0.0), torch.tensor(0.0))
            lo, hi = lo_t.item(), hi_t.item()
            hist = torch.histc(finite, bins=bins, min=lo, max=hi if hi > lo else lo + 1e-6) if finite.numel() \
                else torch.zeros(bins)
            zero = o == 0
            rows.append(LayerStats(name, type(module).__name__.lower(), mean.item(), std.item(),
                                   zero.float().mean().item(), saturated_fraction(module, o),
                                   dead_fraction(zero), [int(v) for v in hist.tolist()], (lo, hi)))
        return record

    handles = [mod.register_forward_hook(hook(name)) for name, mod in m.named_modules()
               if isinstance(mod, ACTIVATION_TYPES)]
    try:
        m(batch)
    finally:
        for h in handles:
            h.remove()
    return InitReport(rows)
