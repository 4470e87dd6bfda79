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


def problems(findings: list[Finding]) -> list[Finding]:
    """The findings that make `coach check` exit 1."""
    return [f for f in findings if f.severity in ("warning", "error")]
