"""Step 6: the learning-rate range test (Smith 2017: exponential sweep, smoothed loss, on a fresh
copy) and the lectures' quick probe of 1e-1, 1e-2, 1e-3, 1e-4 for ~100 iterations; the label
control (real against shuffled labels) when validation stays at chance."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from coach.babysit.checks.controls import fresh, mean, normalized, sgd_like, train_step
from coach.nn.maker import BUILDER, Maker
from coach.babysit.checks.result import CheckResult
from coach.babysit.findings import Finding
from coach.config import Config
from coach.data import Data
from coach.fmt import sig
from coach.optim import build_optimizer
from coach.train.losses import make_loss

PROBE_LRS = (1e-1, 1e-2, 1e-3, 1e-4)


def lr_range_test(cfg: Config, data: Data, start: float = 1e-7, end: float = 10.0, steps: int = 100,
                  beta: float = 0.98, maker: Maker = BUILDER) -> dict[str, Any]:
    """Exponential LR sweep on a fresh copy (the model under check is untouched); returns
    the smoothed loss per LR and a suggestion: the LR of the smoothed minimum / 10."""
    bs = min(cfg.train.batch_size, len(data.train))
    model = fresh(cfg, data, data.train.x[:256], maker=maker)
    opt = build_optimizer(cfg.optim.model_copy(update={"lr": start, "name": sgd_like(cfg.optim.name)}), model)
    loss_fn = make_loss(cfg.train.loss)
    g = torch.Generator().manual_seed(cfg.seed)
    lrs, losses, avg, best = [], [], 0.0, math.inf
    model.train()
    for i in range(steps):
        lr = start * (end / start) ** (i / max(steps - 1, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(data.train), (bs,), generator=g)
        loss = train_step(model, opt, loss_fn, data.train.x[idx], data.train.y[idx])
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * loss
        smoothed = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > 4 * best:
            break
    k = min(range(len(losses)), key=losses.__getitem__) if losses else 0
    return {"lrs": lrs, "losses": losses, "min_lr": lrs[k] if lrs else None,
            "suggested_lr": lrs[k] / 10 if lrs else None}


def lr_probe(cfg: Config, data: Data, lrs: tuple[float, ...] = PROBE_LRS, steps: int = 100,
             maker: Maker = BUILDER) -> list[dict[str, Any]]:
    """The lectures' quick probe: ~100 iterations at each LR; does the loss drop?"""
    return [probe_lr(cfg, data, lr, steps, maker=maker) for lr in lrs]


def probe_lr(cfg: Config, data: Data, lr: float, steps: int = 100, labels: Tensor | None = None,
             standardize: bool = False, maker: Maker = BUILDER) -> dict[str, Any]:
    """~steps iterations of a fresh copy at lr on the training set (labels: train on these
    instead, e.g. shuffled ones as a control; standardize: a copy that standardizes its
    inputs); the loss trace and the validation accuracy."""
    bs = min(cfg.train.batch_size, len(data.train))
    y_train = data.train.y if labels is None else labels
    model = fresh(cfg, data, data.train.x[:256], maker=maker)
    if standardize:
        model = normalized(model, data.train.x[:2000])
    opt = build_optimizer(cfg.optim.model_copy(update={"lr": lr, "name": sgd_like(cfg.optim.name)}), model)
    loss_fn = make_loss(cfg.train.loss)
    g = torch.Generator().manual_seed(cfg.seed)
    trace = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data.train), (bs,), generator=g)
        trace.append(train_step(model, opt, loss_fn, data.train.x[idx], y_train[idx]))
        if not math.isfinite(trace[-1]):
            break
    first, last = trace[0], mean(trace[-10:])
    with torch.no_grad():
        model.eval()
        val = data.val if len(data.val) else data.train
        val_acc = (model(val.x[:2000]).argmax(1) == val.y[:2000]).float().mean().item()
    return {"lr": lr, "first": first, "last": last, "val_acc": val_acc, "trace": trace,
            "drops": math.isfinite(last) and last < 0.9 * first,
            # blew up at any point: non-finite, or 3x the starting loss
            "diverged": not all(math.isfinite(t) for t in trace) or max(trace) > 3 * first}


def _labels_or_not(cfg: Config, data: Data, best: dict[str, Any], steps: int, chance: float,
                   probe: list[dict[str, Any]], out: CheckResult, maker: Maker = BUILDER) -> None:
    """Validation at chance while the training loss fell: unrelated labels, or a model that
    learns nothing from these inputs? The control is the same run on shuffled labels (the
    lectures' sanity check; Zhang et al. 2017): labels that carry signal are fit clearly
    faster than shuffled ones, unrelated labels no faster. Inputs that are not normalized are
    standardized in both runs first, so that they cannot pass for a label problem."""
    standardize = any(f.code == "data_not_normalized" for f in out.findings)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    perm = data.train.y[torch.randperm(len(data.train), generator=g)]
    real = probe_lr(cfg, data, best["lr"], steps, standardize=standardize, maker=maker) if standardize else best
    shuffled = probe_lr(cfg, data, best["lr"], steps, labels=perm, standardize=standardize, maker=maker)
    drop_real, drop_shuffled = real["first"] - real["last"], shuffled["first"] - shuffled["last"]
    out.steps["label_control"] = {"lr": best["lr"], "standardized": standardize,
                                  "real": [real["first"], real["last"], real["val_acc"]],
                                  "shuffled": [shuffled["first"], shuffled["last"], shuffled["val_acc"]]}
    if real["val_acc"] >= chance + 0.5 * chance or drop_real > 1.5 * max(drop_shuffled, 0.0) + 0.02 * real["first"]:
        return  # the labels carry signal the model uses: not a label problem
    top = max(r["val_acc"] for r in probe)
    out.findings.append(Finding(
        "label_problem", "error",
        f"the training loss fell but validation accuracy stayed at chance ({top:.1%} vs {chance:.1%}) for every "
        f"LR tried, and at optim.lr={best['lr']:g} the loss falls no faster with the real labels "
        f"({sig(real['first'])} -> {sig(real['last'])}) than with shuffled ones ({sig(shuffled['first'])} -> "
        f"{sig(shuffled['last'])}): the labels look unrelated to the inputs",
        "check that labels and inputs are aligned (shuffled, mis-sorted or corrupted labels)",
        {"val_acc": {str(r['lr']): r["val_acc"] for r in probe}, "chance": chance,
         "real": [real["first"], real["last"]], "shuffled": [shuffled["first"], shuffled["last"]]}))


def check_learning_rate(cfg: Config, data: Data, out: CheckResult, probe_steps: int = 100,
                        range_steps: int = 100, maker: Maker = BUILDER) -> None:
    sweep = lr_range_test(cfg, data, steps=range_steps, maker=maker)
    lrs = tuple(sorted(set(PROBE_LRS) | {cfg.optim.lr}, reverse=True))
    probe = lr_probe(cfg, data, lrs, probe_steps, maker=maker)
    out.steps["lr_range"] = sweep
    out.steps["lr_probe"] = probe
    chance = 1.0 / data.num_classes
    learned = [r for r in probe if r["drops"]]
    # an initialization that cannot learn explains chance-level validation by itself: no verdict on labels
    bad_init = any(f.code in ("init_vanishing", "init_exploding", "saturation", "dead_relu") for f in out.findings)
    if learned and not bad_init and max(r["val_acc"] for r in probe) < chance + 0.5 * chance:
        _labels_or_not(cfg, data, min(learned, key=lambda r: r["last"]), probe_steps, chance, probe, out, maker)
    mine = next(r for r in probe if r["lr"] == cfg.optim.lr)
    working = [r["lr"] for r in learned if not r["diverged"]]
    if mine["diverged"] and working:
        out.findings.append(Finding(
            "lr_too_high", "error",
            f"at optim.lr={cfg.optim.lr:g} the loss blew up within {probe_steps} iterations; it fell at "
            f"{', '.join(f'{lr:g}' for lr in working)}",
            f"use optim.lr={max(working):g} or lower (range test suggests {sweep['suggested_lr'] or 0:.2g})",
            {"probe": {str(r['lr']): [r["first"], r["last"]] for r in probe}}))
    elif not mine["drops"] and not mine["diverged"] and working and cfg.optim.lr < min(working):
        out.findings.append(Finding(
            "lr_too_low", "warning",
            f"at optim.lr={cfg.optim.lr:g} the loss barely moved in {probe_steps} iterations "
            f"({mine['first']:.3g} -> {mine['last']:.3g}); it fell at {', '.join(f'{lr:g}' for lr in working)}",
            f"raise optim.lr to about {min(working):g}-{max(working):g} (range test suggests "
            f"{sweep['suggested_lr'] or 0:.2g})", {"probe": {str(r['lr']): [r["first"], r["last"]] for r in probe}}))
    suggested = sweep.get("suggested_lr")
    said = {f.code for f in out.findings}
    if suggested and not {"lr_too_high", "lr_too_low"} & said:
        ratio = suggested / cfg.optim.lr
        if ratio > 10 or ratio < 0.1:
            code = "lr_too_low" if ratio > 10 else "lr_too_high"
            # the range test is a rough guide (the lectures: a coarse first estimate), and the probe
            # above found no failure at the configured LR: worth knowing, not a verdict
            out.findings.append(Finding(
                code, "info",
                f"the LR range test suggests optim.lr of about {sig(suggested)}, {sig(max(ratio, 1 / ratio))}x "
                f"{'above' if ratio > 10 else 'below'} the configured {sig(cfg.optim.lr)}",
                f"try optim.lr={sig(suggested)} (or search the LR around it: coach search)",
                {"suggested_lr": suggested, "configured_lr": cfg.optim.lr, "ratio": ratio}))
