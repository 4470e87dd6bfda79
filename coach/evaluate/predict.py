"""Predictions, ensembles and Polyak averaging (CS231n lecture 7, "Model Ensembles").

An ensemble averages the predicted probabilities of its members, then takes the argmax.
Snapshot ensembles (Huang et al. 2017) do the same with the weights saved at the end of
each cosine cycle of one run. Polyak/EMA weights are evaluated after recomputing the
batch-norm statistics on the training data (the averaged running statistics belong to
no single set of weights).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from coach.evaluate.tta import views
from coach.train.loop import eval_batch_size


@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, tta: str = "none", pad: int = 2, batch_size: int | None = None,
                  device: torch.device | str = "cpu") -> Tensor:
    """Class probabilities (N, C) on the CPU, averaged over the TTA views of each input."""
    model = model.to(device).eval()
    batch_size = batch_size or eval_batch_size(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        vs = views(xb, tta, pad)
        out.append(torch.stack([F.softmax(model(v).float(), dim=1) for v in vs]).mean(0).cpu())
    return torch.cat(out)


def ensemble(probs: Iterable[Tensor]) -> Tensor:
    """Average the members' probabilities (then argmax gives the ensemble's prediction)."""
    stacked = torch.stack(list(probs))
    return stacked.mean(0)


def scores(probs: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy and negative log-likelihood of averaged probabilities."""
    nll = F.nll_loss(torch.log(probs.clamp_min(1e-12)), y).item()
    return {"acc": (probs.argmax(1) == y).float().mean().item(), "loss": nll}


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_bn(model: nn.Module, x: Tensor, batch_size: int = 256) -> nn.Module:
    """Re-estimate batch-norm running statistics over x (torch.optim.swa_utils.update_bn)."""
    if has_batchnorm(model):
        update_bn([x[i:i + batch_size] for i in range(0, len(x), batch_size)], model)
    return model.eval()
