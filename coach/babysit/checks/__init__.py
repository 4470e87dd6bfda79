"""`coach check`: the lectures' babysitting recipe, run by itself (CS231n lecture 6, steps 1-3).

In order, stopping where a later step would be meaningless:
  1. data sanity: shapes, class balance, statistics after preprocessing
  2. activations at initialization, layer by layer (vanishing, exploding, saturated, dead)
  3. initial loss against log(C) with regularization off (and that regularization raises it)
  4. gradient check of the model on a tiny float64 copy
  5. overfit a small fixed sample to 100% training accuracy; if it fails, say why from the trace
     and from controls (regularization off, a wider copy, standardized inputs)
  6. learning-rate range test (Smith 2017: exponential sweep, smoothed loss, weights
     restored) and the lectures' quick probe of 1e-1, 1e-2, 1e-3, 1e-4 for ~100 iterations

The thresholds are ratios and fractions (of log C, of the first layer's spread, of the
initial loss), not numbers tuned to one dataset.

A cause is claimed only with its own evidence (a differential diagnosis): a symptom another
finding may explain is re-measured on a control that removes that other cause (a rescaled
copy for the gradient check, standardized inputs for the init symptoms and the label check,
regularization off and a wider copy for a failure to memorize), and what the control clears
is folded into the finding that explains it. One module per step; `controls` holds the copies.
bench/planted.py measures recall and precision on planted faults.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from torch import nn

from coach.babysit.checks.controls import (
    mean,
    normalized,
    regularization_settings,
)
from coach.babysit.checks.data import check_data
from coach.babysit.checks.gradients import check_gradients
from coach.babysit.checks.initialization import INIT_CODES, check_init
from coach.babysit.checks.loss import (
    check_initial_loss,
    expected_initial_loss,
    regularization_terms,
)
from coach.babysit.checks.lr import (
    PROBE_LRS,
    check_learning_rate,
    lr_probe,
    lr_range_test,
    probe_lr,
)
from coach.babysit.checks.overfit import check_overfit, overfit_sample, still_falling
from coach.babysit.checks.result import CheckResult, explained
from coach.babysit.findings import Finding, merged
from coach.config import Config
from coach.data import Data
from coach.babysit.userbugs import batch_dependence, label_alignment
from coach.fmt import sig
from coach.nn.init_report import noise_free
from coach.train.checkpoint import seed_everything
from coach.train.job import prepare

__all__ = ["CheckResult", "check", "describe_step", "check_data", "check_init", "check_initial_loss",
           "check_gradients", "check_overfit", "check_learning_rate", "expected_initial_loss", "lr_probe",
           "lr_range_test", "probe_lr", "overfit_sample", "regularization_settings", "regularization_terms",
           "still_falling", "noise_free", "normalized", "mean", "PROBE_LRS", "defer_slow_learning"]


EXPLAIN_SLOW = {"label_problem", "cannot_overfit", "regularization_too_strong", "data_not_normalized", *INIT_CODES}


def defer_slow_learning(findings: list[Finding]) -> list[Finding]:
    """Slow learning has causes other than the LR (labels with no signal, a model too small, too
    much regularization, unscaled inputs, a bad init). When the checklist found one, a slow-LR
    verdict is a remark until that is fixed (then check the LR again), not a second cause."""
    other = sorted({f.code for f in findings if f.code in EXPLAIN_SLOW and f.severity != "info"})
    if not other:
        return findings
    return [Finding(f.code, "info", f"{f.message} (but {', '.join(other)} explains slow learning too: fix that "
                                    "first, then check the LR again)", f.advice, f.evidence | {"explained_by": other})
            if f.code == "lr_too_low" and f.severity != "info" else f for f in findings]


def check(cfg: Config | nn.Module | Any = None, data: Data | Any = None, probe_steps: int = 100,
          overfit_steps: int = 300, range_steps: int = 100, say: Callable[[str], None] | None = None,
          controls: bool = True, model: nn.Module | Any = None, **settings: Any) -> CheckResult:
    """Run the babysitting checklist on cfg; returns findings and what each step measured.
    The step counts bound its cost: about range_steps + 5 x probe_steps training steps, and
    overfit_steps on batches of 20, plus the controls a failure calls for (at most a few more
    overfitting runs, some up to 4x longer or on a wider copy). controls=False: no control
    models in step 5 (the lectures' single overfitting run with regularization off), for callers
    on a time budget. data: a loaded Data, or data held in memory ((x, y) arrays or tensors, a
    dict, a torch Dataset or DataLoader: coach.data.memory). say: where a line per finished step
    goes (None: nowhere). model: your own nn.Module (checked on copies, never trained itself) or a
    function of hyperparameters that builds one (coach.nn.own); check(my_module, (x, y)) is the
    notebook form. settings: config settings by short name (lr=1e-3: Config.set)."""
    job = prepare(cfg, data, model, settings)
    cfg, data, maker = job.cfg, job.data, job.maker
    seed_everything(cfg.seed)
    batch = data.train.x[: min(256, len(data.train))]
    model = job.build()  # a copy of your module: check never trains the module itself
    out = CheckResult(config=cfg.to_dict())

    def done(*names: str) -> None:
        for name in names:
            if say and name in out.steps:
                say(describe_step(name, out.steps))

    check_data(data, model, out)
    if job.given is not None:  # data as the caller ordered them: a label shifted against its input shows there
        aligned = label_alignment(*job.given)
        out.steps["data"]["labels_aligned"] = aligned is None
        out.findings += [aligned] if aligned else []
    done("data")
    loss0 = _init_and_loss(cfg, data, model, batch, out, done)
    init_findings = [f for f in out.findings if f.code in INIT_CODES]
    if not math.isfinite(loss0):
        out.findings = merged(out.findings)
        return out  # nothing downstream means anything with a NaN loss at step 0
    if not check_gradients(model, data, out):
        done("gradcheck")
        out.findings = merged(out.findings)
        return out  # training with wrong gradients is meaningless
    # the gradient check turned on the batch: no example's output may depend on another's input
    mixed = batch_dependence(model, batch[:8])
    out.steps["gradcheck"]["batch_independent"] = mixed is None
    out.findings += [mixed] if mixed else []
    done("gradcheck")
    check_overfit(cfg, data, out, init_findings, max_steps=overfit_steps, controls=controls, maker=maker)
    done("overfit")
    check_learning_rate(cfg, data, out, probe_steps, range_steps, maker=maker)
    done("lr_range")
    out.findings = merged(defer_slow_learning(named_misalignment(out.findings)))
    return out


def _init_and_loss(cfg: Config, data: Data, model: nn.Module, batch: Any, out: CheckResult,
                   done: Callable[..., None]) -> float:
    """Steps 2-3: activations at init and the initial loss; with unnormalized inputs, what of them
    survives standardized inputs (what does not is the data's doing). Returns the initial loss."""
    check_init(model, batch, out, labels=data.train.y[:len(batch)])
    done("init")
    loss0 = check_initial_loss(cfg, model, data, out)
    if any(f.code == "data_not_normalized" for f in out.findings):
        control = CheckResult()
        check_init(normalized(model, batch), batch, control)
        check_initial_loss(cfg, normalized(model, batch), data, control)
        seen = {f.code for f in control.findings}
        explained(out, INIT_CODES - seen, "with standardized inputs the same model shows none of it at init")
    done("initial_loss")
    return loss0


def named_misalignment(findings: list[Finding]) -> list[Finding]:
    """Labels that fit no better than shuffled ones (label_problem) have a named cause when the
    alignment check found it: the misalignment, which keeps the other's evidence."""
    mis = next((f for f in findings if f.code == "labels_misaligned"), None)
    if mis is None:
        return findings
    for f in findings:
        if f.code == "label_problem":
            mis.evidence.setdefault("explains", []).append({"code": f.code, "message": f.message})
    return [f for f in findings if f.code != "label_problem"]


def describe_step(name: str, s: dict[str, Any]) -> str:
    """One line for a finished step of the checklist, numbered as the lectures order them."""
    if name == "data":
        d = s["data"]
        return (f"1. data: {d['train']} train / {d['val']} val / {d['test']} test, {d['classes']} classes, "
                f"input {d['input_shape']}; after {d['preprocess']}: mean {sig(d['mean'])}, std {sig(d['std'])}"
                + ({True: "; labels aligned with their inputs", False: "; labels MISALIGNED"}[d["labels_aligned"]]
                   if "labels_aligned" in d else ""))
    if name == "init":
        return f"2. activations at init (std per layer): {', '.join(sig(layer['std']) for layer in s['init'])}"
    if name == "initial_loss":
        i = s["initial_loss"]
        return (f"3. initial loss {sig(i['loss'])} (expected {sig(i['expected'])}); "
                f"with regularization {sig(i['with_regularization'])}")
    if name == "gradcheck":
        g = s["gradcheck"]
        line = f"4. gradient check: max relative error {sig(g['max_rel_error'])} ({g['verdict']})"
        if g["kink"] or g["precision"]:
            line += f"; not judged: {g['kink']} entries across a kink, {g['precision']} within round-off"
        if "rescaled" in g:
            line += f"; on a copy rescaled to unit activations {sig(g['rescaled']['max_rel_error'])} " \
                    f"({g['rescaled']['verdict']})"
        if "batch_independent" in g:
            line += "; examples independent in a batch" if g["batch_independent"] else \
                "; examples in a batch DEPEND on each other"
        return line
    if name == "overfit":
        o = s["overfit"]
        line = f"5. overfit {o['samples']} examples: {o['train_acc']:.0%} train accuracy after {o['steps']} steps"
        if "regularization_off" in o:
            off = o["regularization_off"]
            line += f" (regularization off: {off['train_acc']:.0%} after {off['steps']})"
        return line
    if name == "lr_range":
        r = s["lr_range"]
        probe = ", ".join(f"{sig(p['lr'])}: {sig(p['first'])}->{sig(p['last'])}" for p in s["lr_probe"])
        return f"6. LR range test suggests {sig(r['suggested_lr'] or float('nan'))}; probe (loss first->last) {probe}"
    raise ValueError(f"no such check step: {name}")
