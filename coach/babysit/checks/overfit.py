"""Step 5: overfit a small fixed sample to 100% training accuracy; when it fails, the controls
say why: regularization (repeated with it off), capacity (a wider copy), unscaled inputs (a
copy that standardizes them), a low LR (the loss still falling), the initialization."""
from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Sample:
    """The small fixed sample step 5 memorizes (x, y from data's training split), its step budget
    and batch, and how the model is made (maker): each control trains a fresh copy on it."""
    data: Data
    x: Tensor
    y: Tensor
    max_steps: int
    batch: int
    maker: Maker = BUILDER

    def train(self, cfg: Config, steps: int | None = None, wide: bool = False, standardize: bool = False,
              extend: bool = True, maker: Maker | None = None) -> dict[str, Any]:
        """overfit_sample on this sample (steps: default max_steps; maker: default the sample's)."""
        return overfit_sample(cfg, self, steps or self.max_steps, wide, standardize, extend, maker or self.maker)

    def off(self, cfg: Config) -> tuple[Config, Maker]:
        """cfg and maker with every regularization setting turned off (the lectures' version)."""
        return changed(cfg, self.maker, dict.fromkeys(regularization_settings(cfg, self.maker), 0.0))


def overfit_sample(cfg: Config, sample: Sample, max_steps: int, wide: bool = False, standardize: bool = False,
                   extend: bool = True, maker: Maker = BUILDER) -> dict[str, Any]:
    """Train a fresh copy on the fixed sample, regularized as cfg says, until it reaches 100%
    training accuracy or max_steps; returns the loss trace, the accuracy and the steps.
    wide: a clearly bigger copy; standardize: a copy that standardizes its inputs (controls);
    extend: a loss still falling at max_steps gets more steps, up to 4x."""
    x, y, batch = sample.x, sample.y, sample.batch
    n = len(x)
    model = fresh(cfg, sample.data, x, cfg.regularize, wide, maker)
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
        xb, yb = (x, y) if cfg.optim.name == "lbfgs" else (x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
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
SAMPLE_BATCHES, BATCH = 5, 20  # the sample: 5 batches of 20 (the lectures: 5-10 minibatches)


def check_overfit(cfg: Config, data: Data, out: CheckResult, init_findings: list[Finding],
                  max_steps: int = 300, controls: bool = True, maker: Maker = BUILDER) -> bool:
    """Step 5: overfit a small sample (SAMPLE_BATCHES batches of BATCH) as configured. When that
    fails with regularization on, the lectures' version (regularization off) says whether the
    regularization is the cause; when it fails with it off too, a wider copy says whether the
    model is simply too small. controls=False: the lectures' version alone (regularization off,
    max_steps, no control models), for callers on a time budget; its failure is then judged
    from the trace only, and a loss still falling when the steps run out is no verdict."""
    n = min(len(data.train), SAMPLE_BATCHES * BATCH)
    sample = Sample(data, data.train.x[:n], data.train.y[:n], max_steps, BATCH, maker)
    settings = regularization_settings(cfg, maker)
    if not controls:
        off_cfg, off_maker = sample.off(cfg)
        run = sample.train(off_cfg, extend=False, maker=off_maker)
        out.steps["overfit"] = {"samples": n, "regularized": False, "memorized": run["train_acc"] == 1.0, **run}
        if run["train_acc"] < 1.0:
            _why_not_overfit(cfg, sample, run, init_findings, out, controls=False)
        return run["train_acc"] == 1.0
    run = sample.train(cfg)
    out.steps["overfit"] = {"samples": n, "regularized": bool(settings), **run}
    if run["train_acc"] == 1.0:
        out.steps["overfit"]["memorized"] = True
        return True
    if settings:
        off_cfg, off_maker = sample.off(cfg)
        off = sample.train(off_cfg, maker=off_maker)
        out.steps["overfit"]["regularization_off"] = off
        if off["train_acc"] == 1.0:
            out.steps["overfit"]["memorized"] = True
            # regularization may slow memorizing (that is its job): it gets REG_SLACK times the
            # steps the unregularized copy needed before it is called too strong
            budget = max(REG_SLACK * off["steps"], max_steps)
            if run["steps"] < budget:
                run = sample.train(cfg, budget)
                out.steps["overfit"].update(run)
                if run["train_acc"] == 1.0:
                    return True
            _name_regularizer(cfg, Sample(data, sample.x, sample.y, budget, BATCH, maker), settings, run, out)
            return False
        run = off  # regularization is not the cause; judge the plain run
    _why_not_overfit(cfg, sample, run, init_findings, out)
    return False


def _name_regularizer(cfg: Config, sample: Sample, settings: dict[str, float], run: dict[str, Any],
                      out: CheckResult) -> None:
    """Which setting stops the model memorizing, and by how much to cut it: each one turned off
    alone, then the culprit cut 10x and 100x (the smallest cut that lets it memorize)."""
    def memorizes(change: dict[str, float]) -> bool:
        c, o = changed(cfg, sample.maker, change)
        return sample.train(c, maker=o)["train_acc"] == 1.0

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
    n = len(sample.x)
    out.findings.append(Finding(
        "regularization_too_strong", "warning",
        f"with {names} the model cannot memorize {n} examples ({run['train_acc']:.0%} training accuracy after "
        f"{run['steps']} steps); with regularization off it reaches 100%",
        f"cut {what[0]} by about {cut}x" if cut else
        f"turn {' and '.join(what)} off or cut it by more than 100x" if len(culprits) == 1 else
        f"weaken {' and '.join(what)} (they stop it memorizing only together)",
        {"settings": {k: settings[k] for k in culprits}, "train_acc": run["train_acc"], "cut_by": cut,
         "samples": n, "step": "overfit"}))


def _why_not_overfit(cfg: Config, sample: Sample, run: dict[str, Any], init_findings: list[Finding],
                     out: CheckResult, controls: bool = True) -> None:
    """Why the sample was not memorized, from the trace and the controls: it blew up (LR too
    high), unscaled inputs (a standardized copy memorizes), a flat or still-falling loss (the
    LR, or the initialization), else a stall: capacity (a wider copy memorizes) or a bug."""
    trace, acc, step, n = run["trace"], run["train_acc"], run["steps"], len(sample.x)
    first = trace[0]  # the loss before any update
    finite = [t for t in trace if math.isfinite(t)]
    evidence = {"samples": n, "steps": step, "train_acc": acc, "first_loss": first,
                "last_loss": trace[-1] if trace else None}
    if len(finite) < len(trace) or max(finite) > 3 * first:
        out.findings.append(Finding(
            "lr_too_high", "error",
            f"overfitting {n} examples blew up: the loss went from {first:.3g} to "
            f"{trace[-1]:.3g} within {step} steps at optim.lr={cfg.optim.lr:g}",
            "lower the learning rate (try 10x lower, or the LR range test's suggestion)", evidence))
        return
    if controls and any(f.code == "data_not_normalized" for f in out.findings):
        off_cfg, off_maker = sample.off(cfg)
        control = sample.train(off_cfg, standardize=True, maker=off_maker)
        evidence["standardized"] = {"train_acc": control["train_acc"], "steps": control["steps"]}
        if control["train_acc"] == 1.0:
            out.findings.append(Finding("cannot_overfit", "warning", "", "", evidence))
            explained(out, {"cannot_overfit"}, f"it cannot memorize {n} examples as they are; standardized, "
                                                f"it does in {control['steps']} steps")
            return
    bad_init = any(f.code in ("init_vanishing", "init_exploding", "saturation") for f in init_findings)
    if not _slow(cfg, run, finite, evidence, bad_init, controls, out):
        _stalled(cfg, sample, run, finite, evidence, bad_init, controls, out)


def _slow(cfg: Config, run: dict[str, Any], finite: list[float], evidence: dict[str, Any], bad_init: bool,
          controls: bool, out: CheckResult) -> bool:
    """A loss that stayed flat, or was still falling when the steps ran out: slow learning (the
    LR, or the initialization when it looked bad). True when that is the verdict."""
    trace, acc, step, n = run["trace"], run["train_acc"], run["steps"], evidence["samples"]
    first = trace[0]
    # means over 10 steps, since the sample's batches differ in loss
    best_drop = 1 - mean(finite[-10:]) / mean(finite[:10]) if finite and first > 0 else 0.0
    if best_drop < 0.1:
        code = "cannot_overfit" if bad_init else "lr_too_low"
        out.findings.append(Finding(
            code, "error" if bad_init else "warning",
            f"the loss stayed flat ({first:.3g} -> {min(finite):.3g}) over {step} steps on {n} examples",
            "fix the initialization first (see the init findings)" if bad_init else
            f"raise the learning rate (optim.lr={cfg.optim.lr:g} barely moves the weights)", evidence))
        return True
    if not controls and still_falling(finite):
        # the steps a time budget allowed ran out while it was still learning: no evidence of a
        # fault (a 10-minute session's 39 steps reached 97% on healthy data and were called stopped)
        out.steps["overfit"]["inconclusive"] = (f"the loss was still falling ({first:.3g} -> {finite[-1]:.3g}) "
                                                f"when its {step} steps ran out, at {acc:.0%} training accuracy")
        return True
    if controls and still_falling(finite):  # not stalled: even 4x the steps ran out before it could memorize
        out.findings.append(Finding(
            "cannot_overfit" if bad_init else "lr_too_low", "warning",
            f"on {n} examples the loss was still falling ({first:.3g} -> {finite[-1]:.3g}) when {step} steps ran "
            f"out, at {acc:.0%} training accuracy: at optim.lr={cfg.optim.lr:g} learning is slow",
            "fix the initialization first (see the init findings)" if bad_init else
            "raise the learning rate (see step 6's probe and the LR range test)", evidence | {"still_falling": True}))
        return True
    return False


def _stalled(cfg: Config, sample: Sample, run: dict[str, Any], finite: list[float], evidence: dict[str, Any],
             bad_init: bool, controls: bool, out: CheckResult) -> None:
    """The loss fell, then stalled: too small a model, or something else (labels, a bug)? A
    clearly wider copy, trained the same way, is the control (it can memorize any labels:
    Zhang et al. 2017)."""
    acc, step, n, first = run["train_acc"], run["steps"], evidence["samples"], run["trace"][0]
    small = False
    if controls and not bad_init and sample.maker.can_widen:  # your own module instance has no wider copy
        wider, off_maker = sample.off(cfg)
        big = sample.train(wider, wide=True, maker=off_maker)
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
