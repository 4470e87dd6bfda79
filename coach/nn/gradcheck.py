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

Two kinds of disagreement say nothing about the backward pass, and are counted apart
rather than judged (the lectures' "kinks in the objective" and "stick around the active
range of floating point"):
  kink       the winners of a ReLU-like unit, a maxout or a max pool (which input was
             larger) differ between L(w+h) and L(w-h): the difference straddles a kink
  precision  the disagreement is within the float64 round-off of L(w+-h) divided by 2h
             (a huge loss, from exploding or saturated activations, leaves the numeric
             gradient only that many correct digits)
A parameter whose sampled entries were all excluded was not checked at all: the result
is `inconclusive`, and the caller should re-check a better-scaled copy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coach.nn.activations import Maxout


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
    max_rel_error: float  # over the entries that were judged (not excluded)
    max_abs_error: float
    kink: int = 0  # entries excluded: the difference straddled a kink
    precision: int = 0  # entries excluded: the disagreement is within float64 round-off
    raw_max_rel_error: float = 0.0  # over every sampled entry, excluded ones too

    @property
    def judged(self) -> int:
        return self.checked - self.kink - self.precision

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

    @property
    def excluded(self) -> int:
        return sum(p.kink + p.precision for p in self.params)

    @property
    def inconclusive(self) -> bool:
        """Some parameter had every sampled entry excluded: its gradient went unchecked."""
        return any(p.checked and not p.judged for p in self.params)

    def worst(self) -> ParamCheck:
        return max(self.params, key=lambda p: p.max_rel_error)

    def __str__(self) -> str:
        w = max([len(p.name) for p in self.params] + [9])
        lines = [f"{'parameter':<{w}}  checked  max rel error  verdict"]
        lines += [f"{p.name:<{w}}  {p.checked:>7}  {p.max_rel_error:>13.2e}  {p.verdict}" for p in self.params]
        lines.append(f"overall: max relative error {self.max_rel_error:.2e} -> {self.verdict}")
        if self.excluded:
            kinks, prec = sum(p.kink for p in self.params), sum(p.precision for p in self.params)
            lines.append(f"not judged: {kinks} entries across a kink, {prec} within float64 round-off")
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

    patterns: list[Tensor] = []
    hooks = [mod.register_forward_hook(lambda mod, inp, out: patterns.append(_winners(mod, inp[0])))
             for mod in m.modules() if isinstance(mod, _KINKED)]

    def winners_and_loss() -> tuple[list[Tensor], float]:
        patterns.clear()
        value = loss().item()
        return list(patterns), value

    m.zero_grad(set_to_none=True)
    loss().backward()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        results = [_check_param(name, p, winners_and_loss, per_param, eps, floor, gen) for name, p in params]
    for h in hooks:
        h.remove()
    return GradcheckResult(results)


def _check_param(name: str, p: Tensor, winners_and_loss: Callable[[], tuple[list[Tensor], float]], per_param: int,
                 eps: float, floor: float, gen: torch.Generator) -> ParamCheck:
    """Centred differences at per_param sampled entries of p against its analytic gradient: an
    entry whose +-eps step changes a kink's winners, or whose disagreement is within float64
    round-off of the loss, is counted apart rather than judged."""
    analytic = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    flat, flat_grad = p.view(-1), analytic.view(-1)
    n = min(per_param, flat.numel())
    idx = torch.randperm(flat.numel(), generator=gen)[:n]
    rel, abs_err, raw, kink, precision = [], [], [], 0, 0
    for i in idx.tolist():
        old = flat[i].item()
        flat[i] = old + eps
        won_plus, plus = winners_and_loss()
        flat[i] = old - eps
        won_minus, minus = winners_and_loss()
        flat[i] = old
        numeric = (plus - minus) / (2 * eps)
        a = flat_grad[i].item()
        err = abs(a - numeric)
        r = err / max(abs(a), abs(numeric), floor)
        raw.append(r)
        if r > 1e-4 and any(not torch.equal(u, v) for u, v in zip(won_plus, won_minus)):
            kink += 1
        elif r > 1e-4 and err <= 10 * ROUNDOFF * max(abs(plus), abs(minus)) / (2 * eps):
            precision += 1
        else:
            abs_err.append(err)
            rel.append(r)
    return ParamCheck(name, n, max(rel, default=0.0), max(abs_err, default=0.0), kink, precision, max(raw, default=0.0))


ROUNDOFF = torch.finfo(torch.float64).eps


_MAX_POOLS = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}
_KINKED = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, Maxout, *_MAX_POOLS)


def _winners(module: nn.Module, x: Tensor) -> Tensor:
    """Which side of its kink each input of a piecewise-linear module is on (the winner of each max)."""
    if isinstance(module, nn.Hardtanh):  # ReLU6 too: two kinks
        return (x > module.min_val).int() + (x >= module.max_val).int()
    if isinstance(module, Maxout):
        return x.unflatten(1, (-1, module.pieces)).argmax(2)
    if type(module) in _MAX_POOLS:
        return _MAX_POOLS[type(module)](x, module.kernel_size, module.stride, module.padding, module.dilation,
                                        module.ceil_mode, return_indices=True)[1]
    return x > 0  # ReLU, leaky ReLU, PReLU
