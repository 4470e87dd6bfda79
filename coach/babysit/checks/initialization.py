"""Step 2: activations at initialization, layer by layer (vanishing, exploding, saturated,
dead), and the gradient each weight gets from one backward pass, for the histograms."""
from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn

from coach.babysit.checks.result import CheckResult
from coach.babysit.findings import Finding
from coach.nn.init_report import InitReport, gradient_stats, init_report, noise_free
from coach.nn.models import CoachModel


def check_init(model: CoachModel, batch: Tensor, out: CheckResult, labels: Tensor | None = None) -> InitReport:
    report = init_report(model, batch)
    layers = report.layers
    out.steps["init"] = [vars(layer) | {"hist_range": list(layer.hist_range)} for layer in layers]
    if labels is not None:  # and the gradients one backward pass gives each weight, for the histograms
        m = noise_free(copy.deepcopy(model))
        out.steps["init_grads"] = gradient_stats(m, F.cross_entropy(m(batch), labels))
    if not layers:
        return report
    first, last = layers[0].std, layers[-1].std
    evidence = {"stds": [round(s, 6) for s in report.stds()], "layers": [layer.name for layer in layers]}
    saturating = [layer for layer in layers if layer.frac_saturated is not None]
    if len(layers) >= 2 and (last < 0.1 * first or last < 1e-3):
        out.findings.append(Finding(
            "init_vanishing", "warning",
            f"activation std falls from {first:.3g} ({layers[0].name}) to {last:.3g} ({layers[-1].name}) at "
            "initialization: gradients will vanish too", _init_advice(model), evidence))
    elif len(layers) >= 2 and (last > 10 * first or last > 100) and not saturating:
        out.findings.append(Finding(
            "init_exploding", "warning",
            f"activation std grows from {first:.3g} ({layers[0].name}) to {last:.3g} ({layers[-1].name}) at "
            "initialization", _init_advice(model), evidence))
    worst_sat = max(saturating, key=lambda layer: layer.frac_saturated or 0.0, default=None)
    if worst_sat is not None and (worst_sat.frac_saturated or 0) > 0.3:
        out.findings.append(Finding(
            "saturation", "warning",
            f"{worst_sat.frac_saturated:.0%} of the {worst_sat.kind} outputs in {worst_sat.name} are saturated "
            "(|tanh| > 0.99 or sigmoid outside 0.01-0.99): their gradients are ~0",
            "initialize smaller (model.init=xavier), add batch norm (model.norm=batch) or use ReLU",
            {"saturated": {layer.name: layer.frac_saturated for layer in saturating}}))
    dead = [layer for layer in layers if layer.frac_dead > 0.3]
    if dead:
        worst = max(dead, key=lambda layer: layer.frac_dead)
        out.findings.append(Finding(
            "dead_relu", "warning",
            f"{worst.frac_dead:.0%} of the units in {worst.name} output zero for every input of a batch",
            "dead units never recover: lower the LR, initialize with kaiming, or try leaky_relu/elu",
            {"dead": {layer.name: layer.frac_dead for layer in dead}}))
    return report


INIT_CODES = {"init_vanishing", "init_exploding", "saturation", "dead_relu", "initial_loss_mismatch"}


def _init_advice(model: nn.Module) -> str:
    return ("use the initialization matched to the activation (model.init=kaiming for ReLU-like, xavier for "
            "tanh) or add batch norm (model.norm=batch)")
