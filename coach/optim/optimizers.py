"""Optimizers from CS231n lecture 7, built on torch.optim, selectable by name.

  sgd        x -= lr * dx
  momentum   SGD + momentum, rho 0.9 (Sutskever et al. 2013)
  nesterov   Nesterov momentum
  adagrad    per-parameter sum of squared gradients (Duchi et al. 2011)
  rmsprop    leaky AdaGrad, decay 0.99 (Tieleman & Hinton 2012)
  adam       momentum + RMSProp + bias correction, 1e-3, (0.9, 0.999) (Kingma & Ba 2015)
  adamw      Adam with decoupled weight decay (Loshchilov & Hutter 2019)
  lbfgs      quasi-Newton, full batch, closure-based: for small deterministic problems
             only (the lectures: "if you can afford full batch updates, try L-BFGS").
             The trainer feeds it the whole training set each step.

Weight decay goes only to weights (tensors of 2+ dims) unless
regularize.decay_bias_and_norm is set: biases and batch-norm scales are not decayed.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from coach.config import OPTIMIZERS, OptimConfig


def split_decay(model: nn.Module, decay_bias_and_norm: bool = False) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters that get weight decay / L1 / L2, those that do not)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if decay_bias_and_norm or p.ndim >= 2 else no_decay).append(p)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool = False) -> list[dict[str, Any]]:
    decay, no_decay = split_decay(model, decay_bias_and_norm)
    if weight_decay == 0:  # one group: half the optimizer's per-step kernel launches on small nets
        return [{"params": decay + no_decay, "weight_decay": 0.0}]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


OPTIMIZERS.register("sgd")(lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=0.0))
OPTIMIZERS.register("momentum")(lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum))
OPTIMIZERS.register("nesterov")(
    lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=True))
OPTIMIZERS.register("adagrad")(lambda groups, c: torch.optim.Adagrad(groups, lr=c.lr, eps=c.eps))
OPTIMIZERS.register("rmsprop")(lambda groups, c: torch.optim.RMSprop(groups, lr=c.lr, alpha=c.alpha, eps=c.eps))
OPTIMIZERS.register("adam")(lambda groups, c: torch.optim.Adam(groups, lr=c.lr, betas=c.betas, eps=c.eps))
OPTIMIZERS.register("adamw")(lambda groups, c: torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, eps=c.eps))
# L-BFGS takes a single parameter group and no weight decay; regularize.l2 adds it to the loss.
OPTIMIZERS.register("lbfgs")(lambda groups, c: torch.optim.LBFGS(
    [p for g in groups for p in g["params"]], lr=c.lr, history_size=20, line_search_fn="strong_wolfe"))


def build_optimizer(cfg: OptimConfig, params: Iterable[dict[str, Any]] | nn.Module,
                    decay_bias_and_norm: bool = False) -> torch.optim.Optimizer:
    groups = param_groups(params, cfg.weight_decay, decay_bias_and_norm) if isinstance(params, nn.Module) \
        else list(params)
    return OPTIMIZERS.get(cfg.name, "optim.name")(groups, cfg)
