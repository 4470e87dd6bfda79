"""Findings: what the babysitter concluded, with evidence and advice in plain words.

A finding has a stable `code` (tools may key on it), a severity, the evidence (numbers,
steps, layer names) and advice. Severities: "error" (training cannot work as set up),
"warning" (it will work badly), "info" (worth knowing). A healthy setup produces no
warning or error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]

CODES = {
    "data_not_normalized": "inputs are not zero-centred and unit-scaled",
    "label_problem": "labels look wrong (out of range, unbalanced, or unrelated to the inputs)",
    "init_vanishing": "activations shrink towards zero layer by layer at initialization",
    "init_exploding": "activations grow layer by layer at initialization",
    "saturation": "tanh/sigmoid units are saturated",
    "dead_relu": "ReLU units never activate",
    "initial_loss_mismatch": "the loss at initialization is far from log(C)",
    "gradient_check_failed": "analytic and numeric gradients disagree",
    "gradient_check_inconclusive": "the gradient check could not judge the backward pass at this scale",
    "cannot_overfit": "the model cannot overfit a small sample",
    "lr_too_high": "the learning rate is too high",
    "lr_too_low": "the learning rate is too low",
    "regularization_too_strong": "regularization is too strong",
    "underfitting": "the model underfits",
    "overfitting": "the model overfits",
    "plateau": "the validation metric has plateaued",
    "nonfinite": "non-finite values (NaN/Inf) appeared",
    "class_imbalance": "classes are very unbalanced",
    "bad_init": "the loss stayed flat at the start, then fell (a bad initialization)",
    "at_chance": "the final model is no better than guessing",
    # bugs in a hand-written training loop (coach.babysit.userbugs)
    "grads_accumulate": "gradients add up across steps (optimizer.zero_grad() is not called)",
    "softmax_before_loss": "the model outputs probabilities where the loss expects logits (softmax before "
                           "cross_entropy)",
    "loss_on_probabilities": "the loss gets probabilities where it expects log-probabilities (nll_loss without log)",
    "training_in_eval_mode": "the model trains in eval mode (dropout and batch norm off)",
    "params_not_updated": "parameters get gradients but no optimizer group holds them",
    "params_frozen": "parameters the optimizer was built for are frozen (requires_grad off)",
    "batch_dependence": "examples in a batch depend on each other in the forward pass",
    "labels_misaligned": "labels are misaligned with the inputs (shifted, or sorted apart from them)",
    "data_not_shuffled": "the training data are not shuffled (sorted by class)",
    "grad_clip_too_hard": "gradient clipping, not the learning rate, sets the step size",
    "schedule_too_fast": "the learning rate was driven to near zero long before the end",
    "input_scale_mismatch": "inputs given to predict are on another scale than at training",
}


# The severity each code is usually reported with (a rule may raise or lower it with the evidence)
# and what to do about it: the README's findings table is generated from these.
SEVERITY = {code: severity for severity, codes in {
    "error": ("label_problem", "gradient_check_failed", "cannot_overfit", "at_chance", "grads_accumulate",
              "softmax_before_loss", "loss_on_probabilities", "training_in_eval_mode", "params_not_updated",
              "batch_dependence", "labels_misaligned"),
    "warning": ("data_not_normalized", "init_vanishing", "init_exploding", "saturation", "dead_relu",
                "initial_loss_mismatch", "regularization_too_strong", "underfitting", "overfitting", "params_frozen",
                "data_not_shuffled", "grad_clip_too_hard", "schedule_too_fast", "input_scale_mismatch"),
    "info": ("gradient_check_inconclusive", "plateau", "class_imbalance", "bad_init"),
    "warning or error": ("lr_too_high", "nonfinite"),
    "warning (info: only the LR range test says so)": ("lr_too_low",),
}.items() for code in codes}
ADVICE = {
    "data_not_normalized": "data.preprocess=standardize (per-channel mean/std) or channel_mean",
    "label_problem": "check that labels and inputs are aligned (shuffled, mis-sorted or corrupted labels)",
    "init_vanishing": "model.init=kaiming for ReLU-like activations, xavier for tanh; or model.norm=batch",
    "init_exploding": "model.init=kaiming or xavier (smaller weights); or model.norm=batch",
    "saturation": "a smaller initialization (model.init=xavier), model.norm=batch, or ReLU",
    "dead_relu": "a lower LR, model.init=kaiming, or leaky_relu / elu",
    "initial_loss_mismatch": "at initialization the loss should be about log(C): check the initialization's "
                             "scale, the head and the regularization",
    "gradient_check_failed": "a custom layer's backward is wrong: check it against autograd",
    "gradient_check_inconclusive": "fix the initialization's scale; the backward pass itself checked out on a "
                                   "rescaled copy",
    "cannot_overfit": "fix what the init findings say first; then a bigger LR or model",
    "lr_too_high": "lower optim.lr 3-10x (or clip gradients: train.grad_clip)",
    "lr_too_low": "raise optim.lr 10x, or take the LR range test's suggestion",
    "regularization_too_strong": "cut the named setting (dropout, weight decay, L1/L2) 10x",
    "underfitting": "a bigger model (model.width, model.depth), longer training or a higher LR",
    "overfitting": "more data or augmentation (augment.*), more regularization, a smaller model",
    "plateau": "decay the LR (schedule.name=cosine or plateau) or stop earlier",
    "nonfinite": "a lower LR, train.grad_clip, and a look for extreme inputs",
    "class_imbalance": "report per-class accuracy; consider class-balanced sampling",
    "bad_init": "model.init=kaiming/xavier or model.norm=batch",
    "at_chance": "do not use the model: run `coach check` on the config (LR, initialization, labels)",
    "grads_accumulate": "call optimizer.zero_grad() before each backward (every k micro-batches, the loss divided "
                        "by k, for accumulation on purpose)",
    "softmax_before_loss": "return logits: F.cross_entropy applies log-softmax itself",
    "loss_on_probabilities": "F.cross_entropy on logits, or F.nll_loss on torch.log_softmax(logits)",
    "training_in_eval_mode": "model.train() before the loop and after every validation pass",
    "params_not_updated": "build the optimizer from model.parameters()",
    "params_frozen": "requires_grad=True on them, or leave them out of the optimizer if frozen on purpose",
    "batch_dependence": "keep the batch axis first and apart in every reshape/view/transpose",
    "labels_misaligned": "index inputs and labels together (one permutation for both)",
    "data_not_shuffled": "shuffle every epoch (DataLoader(shuffle=True))",
    "grad_clip_too_hard": "raise the clipping threshold to about the gradient's usual norm, or remove it",
    "schedule_too_fast": "step an epoch schedule once per epoch, or size the schedule in steps",
    "input_scale_mismatch": "scale the inputs as at training (e.g. divide 0-255 images by 255)",
}


# Where each code can be seen: `coach check` (and the Lightning pre-flight, which runs it), the
# curves of a run (coach's own, coach.watch's, the Lightning Babysitter's), the hooks on a
# hand-written loop (coach.watch and the Lightning Babysitter), prediction.
CHECK, CURVES, LOOP = "check", "curves of any run", "watch, Lightning"
FOUND_BY = {
    "data_not_normalized": CHECK, "label_problem": CHECK, "init_vanishing": CHECK, "init_exploding": CHECK,
    "saturation": f"{CHECK}, {CURVES}", "dead_relu": f"{CHECK}, {CURVES}", "initial_loss_mismatch": CHECK,
    "gradient_check_failed": CHECK, "gradient_check_inconclusive": CHECK, "cannot_overfit": CHECK,
    "lr_too_high": f"{CHECK}, {CURVES}", "lr_too_low": f"{CHECK}, {CURVES}", "regularization_too_strong": CHECK,
    "underfitting": CURVES, "overfitting": CURVES, "plateau": CURVES, "nonfinite": CURVES,
    "class_imbalance": CHECK, "bad_init": CURVES, "at_chance": f"{CURVES}, the autopilot's test",
    "grads_accumulate": LOOP, "softmax_before_loss": LOOP, "loss_on_probabilities": LOOP,
    "training_in_eval_mode": LOOP, "params_not_updated": LOOP, "params_frozen": LOOP,
    "batch_dependence": f"{CHECK}, {LOOP} (once, at the first step)", "labels_misaligned": f"{CHECK} (data in memory), Lightning",
    "data_not_shuffled": LOOP, "grad_clip_too_hard": LOOP, "schedule_too_fast": LOOP,
    "input_scale_mismatch": "coach predict, run.predict, session.predict",
}


@dataclass
class Finding:
    code: str
    severity: Severity
    message: str
    advice: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code}: {self.message}\n    -> {self.advice}"


RANK = {"error": 0, "warning": 1, "info": 2}


def merged(findings: list[Finding]) -> list[Finding]:
    """One finding per code, most severe first (the first is the one thing to fix first): a code
    seen twice keeps its most severe instance, and the others' messages and evidence go into its
    evidence under `also`."""
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        by_code.setdefault(f.code, []).append(f)
    out = []
    for group in by_code.values():
        group = sorted(group, key=lambda f: RANK[f.severity])
        head = group[0]
        if len(group) > 1:
            head = Finding(head.code, head.severity, head.message, head.advice,
                           {**head.evidence, "also": [{"message": f.message, **f.evidence} for f in group[1:]]})
        out.append(head)
    return sorted(out, key=lambda f: RANK[f.severity])


def problems(findings: list[Finding]) -> list[Finding]:
    """The findings that make `coach check` exit 1."""
    return [f for f in findings if f.severity in ("warning", "error")]
