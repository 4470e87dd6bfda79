"""The findings a loop's evidence supports (coach.babysit.userbugs.hooks), each on its own
mechanism: a pure function of the recorded evidence, tested on planted loops."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from coach.babysit.findings import Finding
from coach.babysit.userbugs.hooks import Evidence
from coach.fmt import sig

def ce_floor(classes: int) -> float:
    """The least cross-entropy of probabilities read as logits: p_y = 1, the rest 0."""
    return math.log(classes - 1 + math.e) - 1


def diagnose_loop(ev: Evidence, losses: list[float], epoch_steps: int | None = None) -> list[Finding]:
    """The findings the evidence supports, each on its own mechanism."""
    out: list[Finding] = []
    for rule in (_accumulate, _probabilities, _eval_mode, _optimizer_groups, _frozen, _clipping):
        rule(ev, losses, out)
    _schedule(ev, epoch_steps, out)
    _shuffled(ev, losses, out)
    return out


def _accumulate(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if len(ev.accumulating) >= 2 and len(ev.accumulating) > 3 * len(ev.fresh):
        out.append(Finding(
            "grads_accumulate", "error",
            f"at {len(ev.accumulating)} of {len(ev.accumulating) + len(ev.fresh)} steps checked (from step "
            f"{ev.accumulating[0]}) the gradient at optimizer.step() held the previous step's gradient plus this "
            "step's backward: optimizer.zero_grad() is not called, so every update carries all the earlier ones",
            "call optimizer.zero_grad() before each loss.backward() (for accumulation on purpose: every k "
            "micro-batches, with the loss divided by k)", {"steps": ev.accumulating[:10], "clean_steps": ev.fresh[:10]}))


def _probabilities(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    """Two mechanisms: the loss's own graph (a softmax feeding cross_entropy's log-softmax, or
    nll_loss directly), and the model's outputs being probabilities with a loss that behaves as
    one computed from them (never under the floor while confident; negative)."""
    finite = [v for v in losses if math.isfinite(v)]
    graph = max(set(ev.loss_kinds), key=ev.loss_kinds.count) if len(ev.loss_kinds) >= 2 else None
    if graph and finite:
        low = min(finite)
        what = ("a softmax's output went into cross_entropy, which applies log-softmax itself: the probabilities "
                f"are read as logits, and the loss cannot go under log(C - 1 + e) - 1 (it went down to {sig(low)})"
                if graph == "softmax_before_loss" else
                f"a softmax's output went straight into nll_loss, which expects log-probabilities: the loss is minus "
                f"a probability and goes negative (down to {sig(low)}), and it rewards nothing a log would")
        out.append(Finding(graph, "error", f"in the loss's autograd graph ({len(ev.loss_kinds)} of "
                                           f"{ev.losses_read} steps read): {what}",
                           "return logits and use F.cross_entropy on them" if graph == "softmax_before_loss" else
                           "use F.cross_entropy on logits, or F.nll_loss on torch.log_softmax(logits)",
                           {"min_loss": low, "steps": len(ev.loss_kinds)}))
        return
    seen = ev.outputs
    if not seen or sum(o["probs"] for o in seen) < 0.8 * len(seen) or not finite:
        return
    c = seen[-1]["classes"]
    low = min(finite)
    if low < 0:
        out.append(Finding(
            "loss_on_probabilities", "error",
            f"the model's outputs are probabilities (each row in [0, 1], summing to 1) and the loss went negative "
            f"({sig(low)}): a loss that expects log-probabilities (nll_loss) got probabilities, so it rewards "
            "nothing a log would", "return logits and use F.cross_entropy, or pass torch.log_softmax(logits) to "
                                   "F.nll_loss", {"min_loss": low, "classes": c}))
        return
    confident = seen[-1]["confidence"]
    floor = ce_floor(c)
    if confident > 0.9 and low >= floor - 0.05:
        out.append(Finding(
            "softmax_before_loss", "error",
            f"the model's outputs are probabilities (rows in [0, 1] summing to 1), {sig(confident)} on their "
            f"top class, yet the loss never went under {sig(low)}: cross-entropy applied to probabilities cannot "
            f"go under {sig(floor)} for {c} classes (log-softmax of numbers in [0, 1] is nearly flat), so the "
            "gradients are tiny and the model barely learns", "remove the softmax at the end of the model: "
                                                                "F.cross_entropy takes logits and applies "
                                                                "log-softmax itself",
            {"min_loss": low, "floor": floor, "confidence": confident, "classes": c}))


def _eval_mode(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if len(ev.eval_steps) >= 2:
        out.append(Finding(
            "training_in_eval_mode", "error",
            f"optimizer steps were taken with {', '.join(ev.eval_modules[:4])}"
            f"{' and more' if len(ev.eval_modules) > 4 else ''} in eval mode (at {len(ev.eval_steps)} steps "
            f"checked, from step {ev.eval_steps[0]}): dropout does not drop and batch norm uses its running "
            "statistics instead of the batch's, so the model trains as something it is not",
            "call model.train() before the training loop and again after every validation pass (model.eval())",
            {"steps": ev.eval_steps[:10], "modules": ev.eval_modules[:10]}))


def _optimizer_groups(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if ev.optimizer_own == 0 and ev.optimizer_foreign:
        out.append(Finding(
            "params_not_updated", "error",
            f"the optimizer holds {ev.optimizer_foreign} parameters, none of them this model's: the model's "
            f"{len(ev.not_in_optimizer)} parameters with gradients are never updated (an optimizer built on "
            "another model, or on a copy)", "build the optimizer from this model: torch.optim.X(model.parameters())",
            {"not_in_optimizer": ev.not_in_optimizer[:10]}))
    elif ev.not_in_optimizer:
        out.append(Finding(
            "params_not_updated", "error",
            f"{len(ev.not_in_optimizer)} parameter tensors get gradients but no optimizer group holds them "
            f"({', '.join(ev.not_in_optimizer[:4])}{' ...' if len(ev.not_in_optimizer) > 4 else ''}): they "
            "never change", "build the optimizer from model.parameters() (or add the missing ones as a group); "
                            "to freeze them on purpose, set requires_grad=False",
            {"not_in_optimizer": ev.not_in_optimizer[:20]}))


def _frozen(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    if ev.frozen_in_optimizer and not ev.frozen_prefix:
        out.append(Finding(
            "params_frozen", "warning",
            f"{len(ev.frozen_in_optimizer)} parameter tensors the optimizer was built for have requires_grad off "
            f"({', '.join(ev.frozen_in_optimizer[:4])}), and they are not a frozen backbone (the first layers): "
            "they never train", "set requires_grad=True on them, or leave them out of the optimizer if freezing "
                                "them is meant", {"frozen": ev.frozen_in_optimizer[:20]}))


def _clipping(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    r = sorted(ev.clip_ratio)
    if len(r) >= 3 and r[len(r) // 2] < 0.1 and sum(x < 0.5 for x in r) >= 0.8 * len(r):
        med = r[len(r) // 2]
        out.append(Finding(
            "grad_clip_too_hard", "warning",
            f"at optimizer.step() the gradient was {sig(med)} of the norm backward made (median of {len(r)} "
            f"steps checked; backward's median norm {sig(sorted(ev.raw_norm)[len(ev.raw_norm) // 2])}): clipping "
            "rescales nearly every step, so its threshold, not the learning rate, sets the step size",
            "raise the clipping threshold to about the gradient's usual norm (max_norm=1.0 is common) or remove it",
            {"median_ratio": med, "ratios": r[:10]}))


def _schedule(ev: Evidence, epoch_steps: int | None, out: list[Finding]) -> None:
    lrs, n = ev.lrs, len(ev.lrs)
    if n < 20:
        return
    peak = max(lrs)
    low = next((i for i, v in enumerate(lrs) if v < 1e-3 * peak and max(lrs[i:]) < 1e-2 * peak), None)
    if peak > 0 and low is not None and low < 0.5 * n:
        where = f" (in epoch {low // epoch_steps + 1})" if epoch_steps else ""
        out.append(Finding(
            "schedule_too_fast", "warning",
            f"the learning rate fell from {sig(peak)} to {sig(lrs[low])} by step {low + 1} of {n}{where} and stayed "
            "under 1/100 of its peak: the rest of training hardly moved the weights (a per-epoch schedule "
            "stepped after every batch decays epochs-worth at each step)",
            "call scheduler.step() once per epoch for an epoch schedule, or size the schedule in steps",
            {"peak_lr": peak, "step": low + 1, "steps": n, "lr": lrs[low]}))


def _shuffled(ev: Evidence, losses: list[float], out: list[Finding]) -> None:
    """A batch drawn at random is a sample of the data: its mean varies from batch to batch as
    the spread within a batch, over its size, says (a ratio of about 1). Batches drawn from data
    sorted by class are each one class: their means vary like the classes' (many times that)."""
    if len(ev.batch_means) < 20:
        return
    means, spreads = torch.tensor(ev.batch_means, dtype=torch.float64), torch.tensor(ev.batch_spreads, dtype=torch.float64)
    ratio = float((means.var(0) / spreads.mean(0).clamp_min(1e-12)).mean())
    if ratio > 5:
        follows = lag_correlation(means, None)
        out.append(Finding(
            "data_not_shuffled", "warning",
            f"the batches are not samples of the data: their inputs' means vary {sig(ratio)}x as much as random "
            f"batches' would (over {len(ev.batch_means)} steps), and neighbouring batches are alike (correlation "
            f"{sig(follows)}): the data arrive grouped (sorted by class, most likely), so each stretch of training "
            "pulls the model towards one class", "shuffle every epoch: DataLoader(..., shuffle=True) or a new "
                                                 "torch.randperm each epoch",
            {"variance_ratio": ratio, "input_correlation": follows, "steps": len(ev.batch_means)}))


def lag_correlation(series: Tensor, window: int | None = 25) -> float:
    """Lag-1 autocorrelation of each column less its moving average (window steps; None: its
    mean), averaged: about 0 for independent draws, near 1 for a series that follows itself."""
    if series.dim() != 2 or len(series) < 3 * (window or 10):
        return 0.0
    t = series.T[:, None, :]  # (columns, 1, steps)
    trend = torch.nn.functional.avg_pool1d(t, window, 1, window // 2, count_include_pad=False)[:, 0, :series.shape[0]] \
        if window else series.T.mean(1, keepdim=True)
    r = series.T - trend
    r = r - r.mean(1, keepdim=True)
    den = (r * r).sum(1)
    ok = den > 0
    return float(((r[:, 1:] * r[:, :-1]).sum(1)[ok] / den[ok]).mean()) if ok.any() else 0.0
