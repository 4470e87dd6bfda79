"""Prediction, in one place: probabilities of a model on raw inputs, averaged over test-time
views and over ensemble members (CS231n lecture 7, "Model Ensembles"), and `Predictor`, what a
coach folder predicts with (its weights, views and members), which `coach predict`, `Run.predict`,
an autopilot session and `coach evaluate` all use (coach.train.run.predictor opens one on a path).

An ensemble averages the predicted probabilities of its members, then takes the argmax.
Snapshot ensembles (Huang et al. 2017) do the same with the weights saved at the end of
each cosine cycle of one run. Polyak/EMA weights are evaluated after recomputing the
batch-norm statistics on the training data (the averaged running statistics belong to
no single set of weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from coach.config import Config
from coach.data.views import views


def eval_batch_size(device: torch.device | str) -> int:
    """Forward-only batches: big on an accelerator; on a CPU a 1024-example batch's activations
    fall out of cache (measured 2x slower per example than 128 for the default convnet)."""
    return 1024 if torch.device(device).type != "cpu" else 128


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


def view_pad(cfg: Config) -> int:
    """How far test-time translations and crops reach: as far as the run's training crops, at least 2 px."""
    return max(cfg.augment.crop_padding, 2)


class Weights(Protocol):
    """What a Predictor reads of a run (coach.train.run.Run is one)."""
    dir: Path
    config: Config

    def load_model(self, which: str = "best", model: nn.Module | None = None) -> nn.Module: ...


@dataclass(frozen=True)
class Choice:
    """Which weights, which test-time views, which other runs' final weights to average with."""
    weights: str = "best"
    tta: str = "none"
    ensemble: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Predictor:
    """A run's model as its folder says to predict with: `choice`'s weights, seen through its
    test-time views (translations as wide as the run's crops, at least 2 px), averaged with its
    ensemble members (each through the same views), members opened with `open_run`."""

    def __init__(self, run: Weights, choice: Choice, open_run: Any = None):
        self.run, self.choice, self.open_run = run, choice, open_run
        self.pad = view_pad(run.config)

    def probabilities(self, x: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """Class probabilities (N, C) on the CPU for raw inputs x."""
        c = self.choice
        probs = [predict_proba(self.run.load_model(c.weights), x, c.tta, self.pad, device=device)]
        for d in c.ensemble:
            probs.append(predict_proba(self.open_run(d).load_model("final"), x, c.tta, self.pad, device=device))
        return ensemble(probs)
