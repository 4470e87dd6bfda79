"""Step 5: overfit a small fixed sample to 100% training accuracy; when it fails, the controls
say why: regularization (repeated with it off), capacity (a wider copy), unscaled inputs (a
copy that standardizes them), a low LR (the loss still falling), the initialization."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from coach.babysit.checks.controls import (
    changed,
    fresh,
    mean,
    normalized,
    regularization_settings,
    train_step,
    setting_name,
    widened,
)
from coach.babysit.checks.result import CheckResult, explained
from coach.babysit.findings import Finding
from coach.config import Config
from coach.data import Data
from coach.nn.maker import BUILDER, Maker
from coach.optim import build_optimizer, penalty, split_decay
from coach.train.losses import make_loss


def overfit_sample(cfg: Config, data: Data, x: Tensor, y: Tensor, max_steps: int, batch: int,
                   wide: bool = False, standardize: bool = False, extend: bool = True,
                   maker: Maker = BUILDER) -> dict[str, Any]:
    """Train a fresh copy on the fixed sample (x, y), regularized as cfg says, until it reaches
    100% training accuracy or max_steps; returns the loss trace, the accuracy and the steps.
    wide: a clearly bigger copy; standardize: a copy that standardizes its inputs (controls);
    extend: a loss still falling at max_steps gets more steps, up to 4x."""
    n = len(x)
    model = fresh(cfg, data, x, cfg.regularize, wide, maker)
    if standardize:
        model = normalized(model, x)
    opt = build_optimizer(cfg.optim, model, cfg.regularize.decay_bias_and_norm)
    decay = split_decay(model, cfg.regularize.decay_bias_and_norm)[0]
    loss_fn = make_loss(cfg.train.loss, cfg.regularize.label_smoothing)
    l1, l2 = cfg.regularize.l1, cfg.regularize.l2

    def regularized(scores: Tensor, target: Tensor) -> Tensor:
        extra = penalty(decay, l1, l2)
        return loss_fn(scores, target) + (extra if extra is not None else 0.0)

    trace, acc, step, limit = [], 0.0, 0, max_steps
    model.train()
    while step < limit:
        step += 1
        i = (step - 1) % max(n // batch, 1)
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        if cfg.optim.name == "lbfgs":
            xb, yb = x, y
        trace.append(train_step(model, opt, regularized, xb, yb))
        if not math.isfinite(trace[-1]):
            break
        if step % 10 == 0:
            with torch.no_grad():
                model.eval()
                acc = (model(x).argmax(1) == y).float().mean().item()
                model.train()
            if acc == 1.0:
                break
        if extend and step == limit and limit < 4 * max_steps and still_falling(trace):
            limit += max(max_steps // 2, 1)  # still going down: keep going, as a person would (up to 4x)
    return {"trace": trace, "train_acc": acc, "steps": step}


def still_falling(trace: list[float]) -> bool:
    """Is the loss still going down: the last quarter's mean 10% below the quarter's before?"""
    q = max(len(trace) // 4, 1)
    return len(trace) >= 8 and all(map(math.isfinite, trace[-2 * q:])) and \
        mean(trace[-q:]) < 0.9 * mean(trace[-2 * q:-q])


REG_SLACK = 3


def check_overfit(cfg: Config, data: Data, out: CheckResult, init_findings: list[Finding],
                  max_steps: int = 300, sample_batches: int = 5, batch: int = 20, controls: bool = True,
                  maker: Maker = BUILDER) -> bool:
    """Step 5: overfit a small sample as configured. When that fails with regularization on, the
    lectures' version (regularization off) says whether the regularization is the cause; when
    it fails with it off too, a wider copy says whether the model is simply too small.
    controls=False: the lectures' version alone (regularization off, max_steps, no control
    models), for callers on a time budget; its failure is then judged from the trace only."""
    n = min(len(data.train), sample_batches * batch)
    x, y = data.train.x[:n], data.train.y[:n]
    settings = regularization_settings(cfg, maker)
    if not controls:
        off_cfg, off_maker = changed(cfg, maker, dict.fromkeys(settings, 0.0))
        run = overfit_sample(off_cfg, data, x, y, max_steps, batch, extend=False, maker=off_maker)
        out.steps["overfit"] = {"samples": n, "regularized": False, "memorized": run["train_acc"] == 1.0, **run}
        if run["train_acc"] < 1.0:
            _why_not_overfit(cfg, data, x, y, max_steps, batch, run, init_findings, out, controls=False, maker=maker)
        return run["train_acc"] == 1.0
    run = overfit_sample(cfg, data, x, y, max_steps, batch, maker=maker)
    out.steps["overfit"] = {"samples": n, "regularized": bool(settings), **run}
    if run["train_acc"] == 1.0:
        out.steps["overfit"]["memorized"] = True
        return True
    if settings:
        off_cfg, off_maker = changed(cfg, maker, dict.fromkeys(settings, 0.0))
        off = overfit_sample(off_cfg, data, x, y, max_steps, batch, maker=off_maker)
        out.steps["overfit"]["regularization_off"] = off
        if off["train_acc"] == 1.0:
            out.steps["overfit"]["memorized"] = True
            # regularization may slow memorizing (that is its job): it gets REG_SLACK times the
            # steps the unregularized copy needed before it is called too strong
            budget = max(REG_SLACK * off["steps"], max_steps)
            if run["steps"] < budget:
                run = overfit_sample(cfg, data, x, y, budget, batch, maker=maker)
                out.steps["overfit"].update(run)
                if run["train_acc"] == 1.0:
                    return True
            _name_regularizer(cfg, data, x, y, budget, batch, settings, run, out, maker)
            return False
        run = off  # regularization is not the cause; judge the plain run
    _why_not_overfit(cfg, data, x, y, max_steps, batch, run, init_findings, out, maker=maker)
    return False


def _name_regularizer(cfg: Config, data: Data, x: Tensor, y: Tensor, max_steps: int, batch: int,
                      settings: dict[str, float], run: dict[str, Any], out: CheckResult,
                      maker: Maker = BUILDER) -> None:
    """Which setting stops the model memorizing, and by how much to cut it: each one turned off
    alone, then the culprit cut 10x and 100x (the smallest cut that lets it memorize)."""
    def memorizes(change: dict[str, float]) -> bool:
        c, o = changed(cfg, maker, change)
        return overfit_sample(c, data, x, y, max_steps, batch, maker=o)["train_acc"] == 1.0

    culprits = [k for k in settings if len(settings) == 1 or memorizes({k: 0.0})]
    culprits = culprits or list(settings)  # only together: name them all
    cut = None
    if len(culprits) == 1:
        key = culprits[0]
        for factor in (10, 100):
            if memorizes({key: settings[key] / factor}):
                cut = factor
                break
    names = ", ".join(setting_name(k, settings[k]) for k in culprits)
    what = [setting_name(k, settings[k]).split(" (p")[0].split("=")[0] for k in culprits]  # key, or "the dropout..."
    n = len(x)
    out.findings.append(Finding(
        "regularization_too_strong", "warning",
        f"with {names} the model cannot memorize {n} examples ({run['train_acc']:.0%} training accuracy after "
        f"{run['steps']} steps); with regularization off it reaches 100%",
        f"cut {what[0]} by about {cut}x" if cut else
        f"turn {' and '.join(what)} off or cut it by more than 100x" if len(culprits) == 1 else
        f"weaken {' and '.join(what)} (they stop it memorizing only together)",
        {"settings": {k: settings[k] for k in culprits}, "train_acc": run["train_acc"], "cut_by": cut,
         "samples": n, "step": "overfit"}))


def _why_not_overfit(cfg: Config, data: Data, x: Tensor, y: Tensor, max_steps: int, batch: int,
                     run: dict[str, Any], init_findings: list[Finding], out: CheckResult,
                     controls: bool = True, maker: Maker = BUILDER) -> None:
    trace, acc, step, n = run["trace"], run["train_acc"], run["steps"], len(x)
    first = trace[0]  # the loss before any update
    finite = [t for t in trace if math.isfinite(t)]
    diverged = len(finite) < len(trace) or max(finite) > 3 * first
    # means over 10 steps, since the sample's batches differ in loss
    best_drop = 1 - mean(finite[-10:]) / mean(finite[:10]) if finite and first > 0 else 0.0
    evidence = {"samples": n, "steps": step, "train_acc": acc, "first_loss": first,
                "last_loss": trace[-1] if trace else None}
    if diverged:
        out.findings.append(Finding(
            "lr_too_high", "error",
            f"overfitting {n} examples blew up: the loss went from {first:.3g} to "
            f"{trace[-1]:.3g} within {step} steps at optim.lr={cfg.optim.lr:g}",
            "lower the learning rate (try 10x lower, or the LR range test's suggestion)", evidence))
        return
    if controls and any(f.code == "data_not_normalized" for f in out.findings):
        off_cfg, off_maker = changed(cfg, maker, dict.fromkeys(regularization_settings(cfg, maker), 0.0))
        control = overfit_sample(off_cfg, data, x, y, max_steps, batch, standardize=True, maker=off_maker)
        evidence["standardized"] = {"train_acc": control["train_acc"], "steps": control["steps"]}
        if control["train_acc"] == 1.0:
            out.findings.append(Finding("cannot_overfit", "warning", "", "", evidence))
            explained(out, {"cannot_overfit"}, f"it cannot memorize {n} examples as they are; standardized, "
                                                f"it does in {control['steps']} steps")
            return
    bad_init = any(f.code in ("init_vanishing", "init_exploding", "saturation") for f in init_findings)
    if best_drop < 0.1:
        code = "cannot_overfit" if bad_init else "lr_too_low"
        out.findings.append(Finding(
            code, "error" if bad_init else "warning",
            f"the loss stayed flat ({first:.3g} -> {min(finite):.3g}) over {step} steps on {n} examples",
            "fix the initialization first (see the init findings)" if bad_init else
            f"raise the learning rate (optim.lr={cfg.optim.lr:g} barely moves the weights)", evidence))
        return
    if controls and still_falling(finite):  # not stalled: even 4x the steps ran out before it could memorize
        out.findings.append(Finding(
            "cannot_overfit" if bad_init else "lr_too_low", "warning",
            f"on {n} examples the loss was still falling ({first:.3g} -> {finite[-1]:.3g}) when {step} steps ran "
            f"out, at {acc:.0%} training accuracy: at optim.lr={cfg.optim.lr:g} learning is slow",
            "fix the initialization first (see the init findings)" if bad_init else
            "raise the learning rate (see step 6's probe and the LR range test)", evidence | {"still_falling": True}))
        return
    # the loss fell, then stalled: too small a model, or something else (labels, a bug)?
    # A clearly wider copy, trained the same way, is the control (it can memorize any labels: Zhang et al. 2017)
    small = False
    if controls and not bad_init and maker.can_widen:  # your own module instance has no wider copy
        wider, off_maker = changed(cfg, maker, dict.fromkeys(regularization_settings(cfg, maker), 0.0))
        big = overfit_sample(wider, data, x, y, max_steps, batch, wide=True, maker=off_maker)
        evidence["wider"] = {**widened(cfg), "train_acc": big["train_acc"]}
        small = big["train_acc"] == 1.0
    bigger = ""
    if small:
        bigger = (f"model.hidden={evidence['wider']['hidden']}" if cfg.model.hidden is not None
                  else f"model.width={evidence['wider']['width']}")
    out.findings.append(Finding(
        "cannot_overfit", "warning",
        f"on {n} examples the loss fell ({first:.3g} -> {min(finite):.3g}) then "
        f"{'stalled' if controls else 'stopped'} at {acc:.0%} training accuracy after {step} steps"
        + (f"; a copy with {bigger} memorizes them: the model is too small" if small else ""),
        f"a bigger model: at {bigger} it memorizes" if small else "fix what the init findings say first" if bad_init
        else "a model that cannot memorize a few examples has a bug, or the LR is off (see step 6)",
        evidence | {"capacity": small}))
