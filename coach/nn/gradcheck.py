"""Gradient checking (CS231n lecture 6/7 notes): analytic vs numeric gradients.

The model is copied to float64 and put in eval mode (dropout, DropConnect and
stochastic depth off, batch norm on its running statistics), so the loss is a
deterministic function of the parameters. With fixed_noise=True it stays in training
mode instead and every evaluation of the loss reseeds the random generators first, so
each one draws the same dropout masks, dropped blocks and pooling regions: the lectures'
other way ("fix the random seed"), which checks the backward pass through the masks. For a sample of entries of every
parameter the centred difference (L(w+h) - L(w-h)) / 2h is compared with autograd:

    relative error = |analytic - numeric| / max(|analytic|, |numeric|, floor)

The floor keeps gradients that are both ~0 from reading as large relative errors.
Verdicts follow the lectures: > 1e-2 wrong, 1e-2..1e-4 uncomfortable, < 1e-4 ok
(objectives with kinks such as ReLU or max pooling rarely get lower), < 1e-7 good.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def verdict(rel_error: float) -> str:
    if not rel_error == rel_error or rel_error > 1e-2:  # NaN counts as wrong
        return "wrong"
    if rel_error > 1e-4:
        return "uncomfortable"
    if rel_error > 1e-7:
        return "ok"
    return "good"


@dataclass
class ParamCheck:
    name: str
    checked: int
    max_rel_error: float
    max_abs_error: float

    @property
    def verdict(self) -> str:
        return verdict(self.max_rel_error)


@dataclass
class GradcheckResult:
    params: list[ParamCheck]

    @property
    def max_rel_error(self) -> float:
        return max((p.max_rel_error for p in self.params), default=0.0)

    @property
    def verdict(self) -> str:
        return verdict(self.max_rel_error)

    @property
    def passed(self) -> bool:
        return self.verdict != "wrong"

    def worst(self) -> ParamCheck:
        return max(self.params, key=lambda p: p.max_rel_error)

    def __str__(self) -> str:
        w = max([len(p.name) for p in self.params] + [9])
        lines = [f"{'parameter':<{w}}  checked  max rel error  verdict"]
        lines += [f"{p.name:<{w}}  {p.checked:>7}  {p.max_rel_error:>13.2e}  {p.verdict}" for p in self.params]
        lines.append(f"overall: max relative error {self.max_rel_error:.2e} -> {self.verdict}")
        return "\n".join(lines)


def gradcheck(model: nn.Module, x: Tensor, y: Tensor,
              loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
              eps: float = 1e-6, per_param: int = 8, floor: float = 1e-6, seed: int = 0,
              fixed_noise: bool = False) -> GradcheckResult:
    """Check autograd against centred finite differences on a tiny batch, in float64."""
    loss_fn = loss_fn or F.cross_entropy
    m = copy.deepcopy(model).double().train(fixed_noise)
    x = x.detach().double()
    params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]

    def loss() -> Tensor:
        if not fixed_noise:
            return loss_fn(m(x), y)
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(seed)
            return loss_fn(m(x), y)

    m.zero_grad(set_to_none=True)
    loss().backward()
    gen = torch.Generator().manual_seed(seed)
    results = []
    with torch.no_grad():
        for name, p in params:
            analytic = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            flat, flat_grad = p.view(-1), analytic.view(-1)
            n = min(per_param, flat.numel())
            idx = torch.randperm(flat.numel(), generator=gen)[:n]
            rel, abs_err = [], []
            for i in idx.tolist():
                old = flat[i].item()
                flat[i] = old + eps
                plus = loss().item()
                flat[i] = old - eps
                minus = loss().item()
                flat[i] = old
                numeric = (plus - minus) / (2 * eps)
                a = flat_grad[i].item()
                abs_err.append(abs(a - numeric))
                rel.append(abs(a - numeric) / max(abs(a), abs(numeric), floor))
            results.append(ParamCheck(name, n, max(rel, default=0.0), max(abs_err, default=0.0)))
    return GradcheckResult(results)
