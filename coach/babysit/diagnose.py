"""Reading the curves (CS231n lecture 6, "Babysitting"): what a person sees in loss and
accuracy plots, as rules over a run's metrics and monitors.

  overfitting      the train/val accuracy gap is large and grew, or validation loss
                   rose while training loss kept falling
  underfitting     training accuracy low (far from 100%) and flat, with a small gap
  regularization_too_strong   underfitting while strong regularization is configured,
                   or the weights shrink while the loss stays high
  lr_too_high      divergence (non-finite steps), a loss that ends above where it
                   started, one that shot 10x above its start and came back, or
                   update/weight ratios far above 1e-3
  lr_too_low       a loss that barely falls with update/weight ratios far below 1e-3
  plateau          validation has not improved for several evaluations at a constant LR
  bad_init         flat loss at the start, then a sudden fall
  dead_relu, saturation   from the activation monitors
  label_problem    training fits while validation stays at chance

Thresholds are fractions of the achievable range (1 - chance) and ratios of the run's own
numbers, so they carry over to other data and models.
"""
from __future__ import annotations

import math
from typing import Any

from coach.babysit.findings import Finding, merged
from coach.config import Config
from coach.fmt import sig


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def diagnose(cfg: Config, metrics: list[dict[str, Any]], summary: dict[str, Any] | None = None,
             monitors: list[dict[str, Any]] | None = None, num_classes: int | None = None) -> list[Finding]:
    summary = summary or {}
    monitors = [m for m in monitors or [] if m["layers"]]  # the step-0 record holds activations only
    evals = [m for m in metrics if m.get("type", "eval") == "eval" and "val_acc" in m]
    steps = [m for m in metrics if m.get("type") == "step"]
    out: list[Finding] = []
    chance = 1.0 / num_classes if num_classes else 0.0
    _at_chance(summary, num_classes, out)
    _nonfinite(summary, steps, out)
    _learning_rate(cfg, steps, monitors, out)
    if evals and all("train_acc" in m for m in evals):  # over/underfitting compare train with val
        _fit(cfg, evals, monitors, chance, out)
    if evals:
        _plateau(cfg, evals, out)
    _bad_init(steps, out)
    _units(monitors, out)
    return merged(out)


def within_noise_of_chance(acc: float, n: int, num_classes: int) -> bool:
    """Is an accuracy measured on n examples indistinguishable from guessing among num_classes?
    (within 3 standard errors of 1/C: a model that learned nothing lands there 99.9% of the time)"""
    if not num_classes or not n or not math.isfinite(acc):
        return not math.isfinite(acc)
    chance = 1.0 / num_classes
    return acc <= chance + 3 * math.sqrt(chance * (1 - chance) / n)


def chance_message(acc: float, num_classes: int, split: str) -> str:
    return (f"the final model is no better than chance: {split} accuracy {sig(acc)} against "
            f"{sig(1 / num_classes)} for guessing among {num_classes} classes")


def _at_chance(summary: dict[str, Any], num_classes: int | None, out: list[Finding]) -> None:
    final = summary.get("final") or {}
    n = summary.get("val_examples")
    if summary.get("status") == "diverged" or not num_classes or not n or "val_acc" not in final:
        return  # a divergence is its own finding
    if within_noise_of_chance(final["val_acc"], n, num_classes):
        out.append(Finding("at_chance", "error", chance_message(final["val_acc"], num_classes, "validation"),
                           "do not use this model: run `coach check` on the config to find why (the learning "
                           "rate, the initialization, the labels)", {"val_acc": final["val_acc"], "n": n,
                                                                     "chance": 1 / num_classes}))


def _nonfinite(summary: dict[str, Any], steps: list[dict[str, Any]], out: list[Finding]) -> None:
    skipped = summary.get("skipped_steps", 0)
    if summary.get("status") == "diverged":
        out.append(Finding("lr_too_high", "error", f"training diverged: {summary.get('stop_reason')}",
                           "lower optim.lr (10x), check the initialization and the inputs' scale",
                           {"skipped_steps": skipped, "rollbacks": summary.get("rollbacks", 0)}))
    if skipped:
        out.append(Finding("nonfinite", "warning" if summary.get("status") != "diverged" else "error",
                           f"{skipped} steps had a non-finite loss or gradient and were skipped "
                           f"({summary.get('rollbacks', 0)} roll-back(s) with the LR halved)",
                           "lower the LR or clip gradients (train.grad_clip); look for extreme inputs",
                           {"skipped_steps": skipped, "rollbacks": summary.get("rollbacks", 0)}))


def _learning_rate(cfg: Config, steps: list[dict[str, Any]], monitors: list[dict[str, Any]],
                   out: list[Finding]) -> None:
    losses = [s["loss"] for s in steps]
    ratios = [v["update_ratio"] for m in monitors for v in m["layers"].values() if math.isfinite(v["update_ratio"])]
    median_ratio = sorted(ratios)[len(ratios) // 2] if ratios else None
    if len(losses) >= 10:
        k = max(len(losses) // 10, 2)
        first, last = _mean(losses[:k]), _mean(losses[-k:])
        evidence = {"first_loss": first, "last_loss": last, "median_update_ratio": median_ratio}
        if math.isfinite(first) and last > first * 1.05:
            out.append(Finding("lr_too_high", "warning",
                               f"the training loss ended higher than it started ({first:.3g} -> {last:.3g})",
                               "lower optim.lr (try 3-10x lower)", evidence))
            return
        # a blow-up the run survived: the loss shot far above its start, then came back (often by
        # killing units, which leaves it flat near log C): the curve a person reads as "LR too high"
        # (one batch 10x above the start is enough: a healthy run's batches stay within ~2x of it)
        # (against the first step's loss: a blow-up in the first steps would inflate an average)
        start, peak = losses[0], max((x for x in losses if math.isfinite(x)), default=losses[0])
        if math.isfinite(start) and start > 0 and peak > 10 * start:
            at = next(s["step"] for s in steps if s["loss"] >= peak)
            out.append(Finding("lr_too_high", "warning",
                               f"the training loss blew up to {peak:.3g} ({peak / start:.0f}x its start) at step "
                               f"{at} before coming back to {last:.3g}", "lower optim.lr (try 3-10x lower)",
                               evidence | {"peak_loss": peak, "peak_step": at}))
            return
        if median_ratio is not None and median_ratio < 1e-5 and last > 0.9 * first:
            out.append(Finding("lr_too_low", "warning",
                               f"the loss barely fell ({first:.3g} -> {last:.3g}) and updates are "
                               f"{median_ratio:.1e} of the weights (healthy is about 1e-3)",
                               f"raise optim.lr (now {cfg.optim.lr:g}) by 10-100x", evidence))
            return
    if median_ratio is not None and median_ratio > 0.1:
        out.append(Finding("lr_too_high", "warning",
                           f"updates are {median_ratio:.2g} of the weights' size per step (healthy is about 1e-3)",
                           f"lower optim.lr (now {cfg.optim.lr:g})", {"median_update_ratio": median_ratio}))


def _strong_regularization(cfg: Config, monitors: list[dict[str, Any]]) -> list[str]:
    r, o = cfg.regularize, cfg.optim
    # decoupled decay (adamw) shrinks by lr*wd per step and is customarily 10-100x larger than coupled L2
    wd_limit = 0.3 if o.name == "adamw" else 1e-2
    strong = [f"{k}={v:g}" for k, v, limit in (("regularize.l2", r.l2, 1e-2), ("regularize.l1", r.l1, 1e-3),
                                               ("optim.weight_decay", o.weight_decay, wd_limit),
                                               ("regularize.dropout", r.dropout, 0.5)) if v >= limit]
    if len(monitors) >= 2:
        first = sum(v["weight_norm"] for v in monitors[0]["layers"].values())
        last = sum(v["weight_norm"] for v in monitors[-1]["layers"].values())
        if first > 0 and last < 0.5 * first:
            strong.append(f"the weights shrank to {last / first:.0%} of their size")
    return strong


def _fit(cfg: Config, evals: list[dict[str, Any]], monitors: list[dict[str, Any]], chance: float,
         out: list[Finding]) -> None:
    last, first = evals[-1], evals[0]
    gap, gap0 = last["train_acc"] - last["val_acc"], first["train_acc"] - first["val_acc"]
    span = 1.0 - chance
    evidence = {"train_acc": last["train_acc"], "val_acc": last["val_acc"], "gap": gap,
                "val_loss": [e["val_loss"] for e in evals]}
    if chance and last["val_acc"] < chance + 0.1 * span and last["train_acc"] > chance + 0.3 * span:
        out.append(Finding("label_problem", "error",
                           f"training accuracy reached {last['train_acc']:.1%} while validation stayed at chance "
                           f"({last['val_acc']:.1%})", "check that labels and inputs are aligned", evidence))
        return
    best_val_loss = min(e["val_loss"] for e in evals)
    val_rising = len(evals) >= 3 and last["val_loss"] > 1.1 * best_val_loss and last["train_loss"] < min(
        e["train_loss"] for e in evals[:-1])
    if (gap > 0.1 * span and gap > gap0 + 0.05 * span) or (val_rising and gap > 0.05 * span):
        out.append(Finding("overfitting", "warning",
                           f"train accuracy {last['train_acc']:.1%} vs validation {last['val_acc']:.1%} "
                           f"(gap {gap:.1%}, was {gap0:.1%})" + (", and the validation loss is rising" if val_rising
                                                                 else ""),
                           "more data or augmentation (augment.*), more regularization (regularize.dropout, l2, "
                           "optim.weight_decay), a smaller model; the best-on-validation checkpoint is kept",
                           evidence))
        return
    recent = evals[-max(len(evals) // 3, 1):]
    flat = len(evals) >= 3 and recent[-1]["train_acc"] - evals[-len(recent) - 1]["train_acc"] < 0.01 * span
    low = last["train_acc"] < chance + 0.85 * span
    if not (low and gap < 0.1 * span):
        return
    strong = _strong_regularization(cfg, monitors)
    if strong:
        out.append(Finding("regularization_too_strong", "warning",
                           f"training accuracy is only {last['train_acc']:.1%} with strong regularization "
                           f"({', '.join(strong)})", "reduce the regularization strength 10x", evidence))
    elif flat:  # a short run that is still improving is not underfitting yet
        out.append(Finding("underfitting", "warning",
                           f"training accuracy is only {last['train_acc']:.1%} and flat, with validation close "
                           f"behind ({last['val_acc']:.1%})",
                           "a bigger model (model.width, model.depth), longer training, or a higher LR", evidence))


def _plateau(cfg: Config, evals: list[dict[str, Any]], out: list[Finding]) -> None:
    key, mode = cfg.train.monitor, cfg.train.mode
    if len(evals) < 5 or key not in evals[0] or cfg.schedule.name not in ("constant",):
        return
    values = [e[key] for e in evals]
    best_i = (min if mode == "min" else max)(range(len(values)), key=values.__getitem__)
    if len(values) - 1 - best_i >= 3:
        out.append(Finding("plateau", "info",
                           f"{key} last improved {len(values) - 1 - best_i} evaluations ago at a constant LR",
                           "decay the learning rate (schedule.name=cosine or plateau) or stop earlier",
                           {key: values, "best_eval": best_i}))


def _bad_init(steps: list[dict[str, Any]], out: list[Finding]) -> None:
    losses = [s["loss"] for s in steps if math.isfinite(s["loss"])]
    if len(losses) < 20:
        return
    k = max(len(losses) // 10, 3)
    start, later = losses[:k], losses[k:]
    flat = max(start) - min(start) < 0.02 * abs(start[0])
    if flat and min(later) < 0.7 * _mean(start):
        out.append(Finding("bad_init", "info",
                           f"the loss stayed flat for the first {k} logged steps, then fell",
                           "a plateau at the start is the lectures' sign of a bad initialization: try "
                           "model.init=kaiming/xavier or batch norm", {"first_losses": start}))


def _units(monitors: list[dict[str, Any]], out: list[Finding]) -> None:
    if not monitors or not monitors[-1]["acts"]:
        return
    acts = monitors[-1]["acts"]
    dead = {n: a["dead"] for n, a in acts.items() if a["dead"] > 0.5}
    if dead:
        n = max(dead, key=dead.__getitem__)
        out.append(Finding("dead_relu", "warning", f"{dead[n]:.0%} of the units in {n} no longer activate for any "
                                                   "probe input", "lower the LR; try leaky_relu or elu", {"dead": dead}))
    sat = {n: a["saturated"] for n, a in acts.items() if a["saturated"] is not None and a["saturated"] > 0.5}
    if sat:
        n = max(sat, key=sat.__getitem__)
        out.append(Finding("saturation", "warning", f"{sat[n]:.0%} of the units in {n} are saturated",
                           "lower the LR, add batch norm, or use ReLU", {"saturated": sat}))


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    p = Path(path)
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln] if p.exists() else []


def diagnose_run(run_dir: Any) -> list[Finding]:
    """Diagnose a finished run from its directory (metrics, monitors, summary)."""
    from coach.train.run import Run

    run = Run.open(run_dir)
    return diagnose(run.config, run.metrics(), run.summary, read_jsonl(run.dir / "monitors.jsonl"),
                    run.spec["num_classes"])
