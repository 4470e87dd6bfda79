"""Classification losses from CS231n lectures 2-3.

  cross_entropy  softmax cross-entropy, optional label smoothing (Szegedy et al. 2016)
  svm            multiclass SVM (hinge) loss, Weston & Watkins 1999 in the lectures' form:
                 L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1), averaged over the batch

Both take integer labels. `mixed` combines two label sets for mixup/cutmix.
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from coach.config import LOSSES

Loss = Callable[[Tensor, Tensor], Tensor]


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0) -> Loss:
    return lambda scores, y: F.cross_entropy(scores, y, label_smoothing=label_smoothing)


def svm_hinge(scores: Tensor, y: Tensor, margin: float = 1.0) -> Tensor:
    correct = scores.gather(1, y[:, None])
    margins = (scores - correct + margin).clamp_min(0)
    margins = margins.scatter(1, y[:, None], 0.0)  # j == y_i does not count
    return margins.sum(1).mean()


@LOSSES.register("svm")
def svm(label_smoothing: float = 0.0) -> Loss:
    return svm_hinge


def make_loss(name: str, label_smoothing: float = 0.0) -> Loss:
    return LOSSES.get(name, "train.loss")(label_smoothing)


def mixed(loss: Loss, scores: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
    """lam * L(y_a) + (1 - lam) * L(y_b): the mixup/cutmix objective (Zhang et al. 2018)."""
    return lam * loss(scores, y_a) + (1.0 - lam) * loss(scores, y_b)
