"""The copies the differential diagnosis compares against (the lectures' controls): a fresh model
without regularization, a clearly wider one, one that standardizes its inputs, one without the
noise of dropout (coach.nn.init_report.noise_free); the regularization settings that are on; one
training step."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from coach.config import MAX_WIDTH, Config, RegularizeConfig
from coach.data import Data, fit_preprocessor
from coach.nn.models import CoachModel
from coach.nn.maker import BUILDER, Maker
from coach.nn.own import MODULE_DROPOUT


def normalized(model: CoachModel, batch: Tensor) -> CoachModel:
    """A copy of model that standardizes its inputs after its own preprocessing: the control for
    symptoms that inputs which are not zero-centred and unit-scaled may explain by themselves."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        pre = m.preprocess(batch)
    m.preprocess = nn.Sequential(m.preprocess, fit_preprocessor("standardize", pre))  # the data layer's own
    return m


def value(cfg: Config, key: str) -> float:
    section, name = key.split(".")
    return float(getattr(getattr(cfg, section), name))


def fresh(cfg: Config, data: Data, batch: Tensor, reg: RegularizeConfig | None = None,
          wide: bool = False, maker: Maker = BUILDER) -> nn.Module:
    """A re-initialized copy of the model, by default without regularization layers (lectures:
    turn it off); wide: a clearly bigger copy (the capacity control). maker: coach's builder, or
    the user's module (a copy of it as given) or factory (called with these settings)."""
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model.model_copy(update=widened(cfg)) if wide else cfg.model
    return maker.build(cfg, data.input_shape, data.num_classes, data.preprocess, batch,
                       reg=reg or RegularizeConfig(), model=mcfg)


def widened(cfg: Config, factor: int = 4, at_least: int = 64) -> dict[str, Any]:
    """The model settings of a clearly bigger copy: factor times the units in every layer, and
    at least at_least (the capacity control of step 5)."""
    m = cfg.model

    def grow(units: int) -> int:
        return min(max(units * factor, at_least), MAX_WIDTH)

    return {"width": grow(m.width), "hidden": None if m.hidden is None else [grow(h) for h in m.hidden]}


# each regularization setting, and the value that turns it off
REGULARIZERS = ("regularize.dropout", "regularize.spatial_dropout", "regularize.dropconnect",
                "regularize.stochastic_depth", "regularize.l2", "regularize.l1", "regularize.label_smoothing",
                "optim.weight_decay")


def regularization_settings(cfg: Config, maker: Maker = BUILDER) -> dict[str, float]:
    """The regularization settings that are on, by config key; with your own module, the dropout
    layers inside it too (as MODULE_DROPOUT: their largest drop probability)."""
    settings = {key: value(cfg, key) for key in REGULARIZERS if value(cfg, key)}
    if maker.dropout:
        settings[MODULE_DROPOUT] = maker.dropout
    return settings


def changed(cfg: Config, maker: Maker, settings: dict[str, float]) -> tuple[Config, Maker]:
    """cfg and maker with these regularization settings (MODULE_DROPOUT: the dropout layers in
    your module scaled to it, on a copy)."""
    keys = {k: v for k, v in settings.items() if k != MODULE_DROPOUT}
    if MODULE_DROPOUT in settings:
        maker = maker.with_dropout(settings[MODULE_DROPOUT])
    return (cfg.replace(**keys) if keys else cfg), maker


def setting_name(key: str, value: float) -> str:
    return f"the dropout in your module (p up to {value:g})" if key == MODULE_DROPOUT else f"{key}={value:g}"


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Any, x: Tensor, y: Tensor) -> float:
    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    if isinstance(opt, torch.optim.LBFGS):
        return float(opt.step(closure).detach())
    loss = closure()
    if torch.isfinite(loss):
        opt.step()
    return loss.item()


def sgd_like(name: str) -> str:
    return "adam" if name == "lbfgs" else name


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
