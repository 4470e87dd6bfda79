"""Explicit regularization terms added to the loss (CS231n lecture 6/7, "Regularization").

  L2           0.5 * l2 * sum(W^2)       (gradient l2 * W, the lectures' weight decay)
  L1           l1 * sum(|W|)
  elastic net  both at once (Zou & Hastie 2005)

Decoupled weight decay is not here: it is optim.weight_decay with optim.name=adamw.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def penalty(params: list[nn.Parameter], l1: float = 0.0, l2: float = 0.0) -> Tensor | None:
    """The regularization loss for params, or None when both strengths are zero."""
    if not params or (l1 == 0 and l2 == 0):
        return None
    total = torch.zeros((), device=params[0].device, dtype=params[0].dtype)
    if l2:
        total = total + 0.5 * l2 * sum(torch.linalg.vector_norm(p) ** 2 for p in params)
    if l1:
        total = total + l1 * sum(p.abs().sum() for p in params)
    return total
