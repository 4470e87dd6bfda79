"""Step 4: the gradient check of the model on a tiny float64 copy, with its differential diagnosis."""
from __future__ import annotations

import copy
from typing import Any

from coach.babysit.checks.result import CheckResult
from coach.babysit.findings import Finding
from coach.data import Data
from coach.nn.gradcheck import GradcheckResult, gradcheck
from coach.nn.init import lsuv
from coach.nn.models import CoachModel


def _gradcheck_step(result: GradcheckResult) -> dict[str, Any]:
    return {"max_rel_error": result.max_rel_error, "verdict": result.verdict, "inconclusive": result.inconclusive,
            "kink": sum(p.kink for p in result.params), "precision": sum(p.precision for p in result.params),
            "params": [vars(p) for p in result.params]}


def check_gradients(model: CoachModel, data: Data, out: CheckResult) -> bool:
    """Step 4, with its differential diagnosis: a disagreement at a badly scaled initialization
    (saturated or exploding units: few correct digits in L(w+-h); vanishing ones: every step
    crosses a kink) says nothing about the code. So a failure, or a check that could judge no
    entry of some parameter, is repeated on a copy of the same layers rescaled to unit
    activations (LSUV): the backward pass is the same code, so a real bug fails there too."""
    x, y = data.train.x[:4], data.train.y[:4]
    result = gradcheck(model, x, y, per_param=4)
    out.steps["gradcheck"] = _gradcheck_step(result)
    if result.passed and not result.inconclusive:
        return True
    rescaled = copy.deepcopy(model)
    lsuv(rescaled, data.train.x[:256])
    again = gradcheck(rescaled, x, y, per_param=8)
    out.steps["gradcheck"]["rescaled"] = _gradcheck_step(again)
    why = _unjudged(result)
    if not again.passed:
        worst = again.worst()
        out.findings.append(Finding(
            "gradient_check_failed", "error",
            f"autograd and centred finite differences disagree for {worst.name}: relative error "
            f"{worst.max_rel_error:.2e} (above 1e-2 the gradient is wrong), also on a copy rescaled to unit "
            "activations",
            "a custom layer's backward is wrong, or the model is not deterministic in eval mode",
            {"max_rel_error": worst.max_rel_error, "parameter": worst.name,
             "configured_max_rel_error": result.max_rel_error}))
        return False
    at_config = (f"failed (relative error {result.max_rel_error:.2e} in {result.worst().name})" if not result.passed
                 else "could judge no entry of " + ", ".join(p.name for p in result.params if p.checked and not p.judged))
    conclusive = not again.inconclusive
    out.findings.append(Finding(
        # a statement about the check, not a cause: never a warning
        "gradient_check_inconclusive", "info",
        f"at the configured initialization the gradient check {at_config}{why}; "
        + (f"the same layers rescaled to unit activations pass (max relative error {again.max_rel_error:.2e}): "
           "the backward pass is right, the scale is what is wrong" if conclusive else
           "a rescaled copy could not judge every parameter either"),
        "fix the initialization (see the init findings); the gradients themselves are computed correctly"
        if conclusive else "check a custom layer's backward on a small, well-scaled model (coach.gradcheck)",
        {"configured_max_rel_error": result.max_rel_error, "rescaled_max_rel_error": again.max_rel_error,
         "kink": out.steps["gradcheck"]["kink"], "precision": out.steps["gradcheck"]["precision"]}))
    return True


def _unjudged(result: GradcheckResult) -> str:
    kinks = sum(p.kink for p in result.params)
    prec = sum(p.precision for p in result.params)
    parts = [f"{kinks} sampled entries straddled a ReLU/max kink" if kinks else "",
             f"{prec} disagreed by no more than float64 round-off of the loss" if prec else ""]
    parts = [p for p in parts if p]
    return f" ({', '.join(parts)})" if parts else ""
