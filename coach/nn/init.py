"""Weight initialization schemes from CS231n lecture 6 ("Weight Initialization").

  small       W ~ N(0, std^2), std 0.01 by default: fine for shallow nets, activations
              collapse to zero in deep ones
  xavier      Var(W) = gain^2 / fan_in (Glorot & Bengio 2010, in the lectures' fan-in
              form; mode='avg' for Glorot's 2/(fan_in+fan_out)). fan_in of a conv is
              k*k*C_in; normal or uniform
  kaiming     Var(W) = gain^2 / fan_in with the activation's gain, 2/fan_in for ReLU
              (He et al. 2015); normal or uniform
  orthogonal  orthogonal matrices scaled by the gain (Saxe et al. 2014)
  lsuv        layer-sequential unit variance (Mishkin & Matas 2015): orthogonal, then
              each layer rescaled on a real batch until its output variance is 1
  default     leave torch's own initialization

Biases start at zero. The classifier head gets the same scheme with gain 1, except
for LSUV, where it keeps Xavier (a head rescaled to unit-variance logits would push
the initial loss well above log C).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from coach.config import INITS
from coach.errors import UserError
from coach.nn.activations import gain as activation_gain

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def fan_in(weight: Tensor) -> int:
    """Inputs feeding one output unit: D_in for a linear layer, k*k*C_in for a conv."""
    return math.prod(weight.shape[1:])


def fan_out(weight: Tensor) -> int:
    return weight.shape[0] * math.prod(weight.shape[2:])


def _fill(w: Tensor, std: float, distribution: str) -> None:
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std  # U(-b, b) has std b / sqrt(3)
        nn.init.uniform_(w, -bound, bound)
    else:
        nn.init.normal_(w, 0.0, std)


def _check(name: str, kwargs: dict, allowed: set[str]) -> None:
    unknown = set(kwargs) - allowed
    if unknown:
        raise UserError(f"model.init_kwargs: {sorted(unknown)} not accepted by {name}; allowed: {sorted(allowed)}")


def _dist(kwargs: dict) -> str:
    d = kwargs.get("distribution", "normal")
    if d not in ("normal", "uniform"):
        raise UserError(f"model.init_kwargs.distribution: {d!r}; allowed: normal, uniform")
    return d


@INITS.register("small")
def small(w: Tensor, act_gain: float, std: float = 0.01, **kw: object) -> None:
    _check("small", kw, set())
    nn.init.normal_(w, 0.0, std)


@INITS.register("xavier")
def xavier(w: Tensor, act_gain: float, mode: str = "in", **kw: object) -> None:
    _check("xavier", kw, {"distribution"})
    denom = fan_in(w) if mode == "in" else (fan_in(w) + fan_out(w)) / 2
    _fill(w, 1.0 / math.sqrt(denom), _dist(kw))


@INITS.register("kaiming")
def kaiming(w: Tensor, act_gain: float, **kw: object) -> None:
    _check("kaiming", kw, {"distribution"})
    _fill(w, act_gain / math.sqrt(fan_in(w)), _dist(kw))


@INITS.register("orthogonal")
def orthogonal(w: Tensor, act_gain: float, **kw: object) -> None:
    _check("orthogonal", kw, set())
    nn.init.orthogonal_(w, gain=act_gain)


@INITS.register("lsuv")
def lsuv_start(w: Tensor, act_gain: float, **kw: object) -> None:
    _check("lsuv", kw, {"tol", "max_iter"})
    nn.init.orthogonal_(w)


@INITS.register("default")
def keep_default(w: Tensor, act_gain: float, **kw: object) -> None:
    """torch's own reset_parameters (Kaiming-uniform with a=sqrt(5))."""


def initialize(model: nn.Module, name: str, activation: str = "relu", activation_kwargs: dict | None = None,
               batch: Tensor | None = None, head: nn.Module | None = None, **kwargs: float) -> nn.Module:
    """Initialize every Linear/Conv weight of model with the named scheme (in place)."""
    scheme = INITS.get(name, "model.init")
    g = activation_gain(activation, **(activation_kwargs or {}))
    head_ids = {id(m) for m in head.modules()} if head is not None else set()
    if name == "lsuv" and batch is None:
        raise UserError("model.init: lsuv is data-dependent and needs a batch of training inputs")
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, WEIGHTED) or name == "default":
                continue
            if id(m) in head_ids:
                (xavier if name == "lsuv" else scheme)(m.weight, 1.0, **kwargs)
            else:
                scheme(m.weight, g, **kwargs)
            if m.bias is not None:
                m.bias.zero_()
    if name == "lsuv":
        lsuv(model, batch, skip=head_ids, tol=float(kwargs.get("tol", 0.1)), max_iter=int(kwargs.get("max_iter", 10)))
    return model


@torch.no_grad()
def lsuv(model: nn.Module, batch: Tensor, skip: set[int] = frozenset(), tol: float = 0.1, max_iter: int = 10) -> None:
    """Rescale each layer, in forward order, until its output variance on batch is 1 +- tol."""
    was_training = model.training
    model.eval()  # batch norm in eval mode: LSUV measures the layers, not the batch statistics
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED) and id(m) not in skip]
    for layer in layers:
        seen: dict[str, Tensor] = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
        for _ in range(max_iter):
            model(batch)
            var = seen["out"].var().item()
            if not math.isfinite(var) or var < 1e-12 or abs(var - 1.0) < tol:
                break
            layer.weight.div_(math.sqrt(var))
        handle.remove()
    model.train(was_training)
