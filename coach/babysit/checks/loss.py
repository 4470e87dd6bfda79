"""Step 3: the initial loss against log C with regularization off, and what each regularizer adds
(the lectures: it should go up slightly)."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from coach.babysit.checks.controls import value
from coach.babysit.checks.result import CheckResult
from coach.babysit.findings import Finding
from coach.config import Config
from coach.data import Data
from coach.fmt import sig
from coach.nn.init_report import STOCHASTIC, noise_free
from coach.nn.models import CoachModel
from coach.optim import split_decay
from coach.train.losses import make_loss


def expected_initial_loss(loss_name: str, classes: int) -> float:
    """Scores near zero at init: cross-entropy gives log C, the multiclass SVM C - 1."""
    return math.log(classes) if loss_name == "cross_entropy" else float(classes - 1)





def regularization_terms(cfg: Config, model: CoachModel, batches: list[tuple[Tensor, Tensor]],
                         loss_off: float) -> dict[str, float]:
    """What each regularizer adds to the initial loss: the lectures' "crank up regularization,
    the loss should go up" measured term by term (weight decay coupled into the gradient counts
    as the L2 term it is; AdamW's decoupled decay is no loss term)."""
    r, o = cfg.regularize, cfg.optim
    plain = make_loss(cfg.train.loss)

    def mean_loss(m: nn.Module, loss_fn: Any) -> float:
        return sum(loss_fn(m(x), y).item() for x, y in batches) / len(batches)

    terms: dict[str, float] = {}
    with torch.no_grad():
        noisy = [m for m in model.modules() if isinstance(m, STOCHASTIC) and getattr(m, "p", 0) > 0]
        if noisy:
            m = copy.deepcopy(model).train()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                terms["dropout"] = mean_loss(m, plain) - loss_off
        if r.label_smoothing:
            terms["regularize.label_smoothing"] = mean_loss(
                noise_free(copy.deepcopy(model)), make_loss(cfg.train.loss, r.label_smoothing)) - loss_off
        decay = split_decay(model, r.decay_bias_and_norm)[0]
        square = sum(float((p.detach() ** 2).sum()) for p in decay)
        if r.l2:
            terms["regularize.l2"] = 0.5 * r.l2 * square
        if r.l1:
            terms["regularize.l1"] = r.l1 * sum(float(p.detach().abs().sum()) for p in decay)
        if o.weight_decay and o.name != "adamw":
            terms["optim.weight_decay"] = 0.5 * o.weight_decay * square
    return terms


def _dropout_keys(cfg: Config) -> str:
    r = cfg.regularize
    keys = [f"regularize.{k}={v:g}" for k, v in (("dropout", r.dropout), ("spatial_dropout", r.spatial_dropout),
                                                ("dropconnect", r.dropconnect),
                                                ("stochastic_depth", r.stochastic_depth)) if v]
    return ", ".join(keys) or "the model's dropout"


def check_initial_loss(cfg: Config, model: CoachModel, data: Data, out: CheckResult) -> float:
    """Step 3: with regularization off (dropout off too) the loss is about log C; with it on, it
    goes up slightly. A regularizer that multiplies it is too strong: named, with the factor to cut."""
    loss_fn = make_loss(cfg.train.loss)
    bs = min(cfg.train.batch_size, len(data.train))
    batches = [(data.train.x[i:i + bs], data.train.y[i:i + bs]) for i in range(0, min(len(data.train), 4 * bs), bs)]
    m = noise_free(copy.deepcopy(model))
    with torch.no_grad():
        losses = [loss_fn(m(x), y).item() for x, y in batches]
    loss0 = sum(losses) / len(losses)
    expected = expected_initial_loss(cfg.train.loss, data.num_classes)
    terms = regularization_terms(cfg, model, batches, loss0) if math.isfinite(loss0) else {}
    with_reg = loss0 + sum(terms.values())
    out.steps["initial_loss"] = {"loss": loss0, "expected": expected, "with_regularization": with_reg,
                                 "regularization_terms": terms, "loss_name": cfg.train.loss}
    if not math.isfinite(loss0) or loss0 > 1.5 * expected + 0.5 or loss0 < 0.5 * expected:
        out.findings.append(Finding(
            "initial_loss_mismatch", "warning" if math.isfinite(loss0) else "error",
            f"the initial loss is {sig(loss0)} but a model that knows nothing should give about {sig(expected)} "
            f"({'log C' if cfg.train.loss == 'cross_entropy' else 'C - 1'}, C = {data.num_classes})",
            "initial scores should be small: check the initialization scale (model.init) and the inputs' scale",
            {"loss": loss0, "expected": expected}))
    if math.isfinite(with_reg) and terms and with_reg > 1.5 * loss0:
        key, term = max(terms.items(), key=lambda kv: kv[1])
        # the lectures: regularization should raise the initial loss slightly; aim at a tenth of it
        factor = 10 ** math.ceil(math.log10(max(term / (0.1 * loss0), 1.0)))
        name = _dropout_keys(cfg) if key == "dropout" else f"{key}={sig(value(cfg, key))}"
        out.findings.append(Finding(
            "regularization_too_strong", "warning",
            f"at initialization regularization takes the loss from {sig(loss0)} to {sig(with_reg)} "
            f"({sig(with_reg / loss0)}x; it should go up slightly); {name} adds {sig(term)}",
            f"cut {name.split('=')[0]} by about {factor:g}x" if key != "dropout" else
            "lower the drop probability (0.5 is the lectures' usual value; less for small models)",
            {"loss_off": loss0, "loss_on": with_reg, "terms": terms, "cut_by": factor}))
    return loss0
