"""`coach autopilot`: the whole recipe under a time budget, with the reason for every decision.

A careful practitioner following the lectures, with a stopwatch:

  1. setup    look at the data; the plain recipe for its shape is the floor (BN, Kaiming,
              AdamW, one-cycle sized to the time; crops for images, shifts for signals)
  2. cost     time a training step of each model size of that family on this machine
  3. size     the widest model whose final training gets the epochs it needs
  4. check    the babysitter's checks on that model; stop with the reason when training
              cannot work; the LR range test's suggestion
  5. search   what the budget can decide: 3 trials per dimension, successive halving in
              seconds, the plain recipe as arm 0 winning ties within the noise; survivors
              continue from their weights
  6. curves   read the winner's curves
  7. final    the winner continues for the time left, its schedule re-fitted to it (EMA on)
  8. choose   on validation: best or EMA weights, test-time views it was trained on, an
              ensemble with the runner-up
  9. test     the test split, once; the report

Every stage is recorded in state.json with its decision, its reason and its seconds;
`--resume` continues after the last finished stage (search and final training resume
mid-way). The clock runs from the process's start and every stage plans with the time
that is actually left, so the session ends within the budget.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from coach.autopilot import plan as P
from coach.autopilot.choose import choose, planned_passes, test_once
from coach.autopilot.cost import Cost, choose_threads, ladder, measure_ladder, time_config
from coach.autopilot.page import render_session
from coach.autopilot.session import Session
from coach.babysit import check, diagnose_run, problems
from coach.config import Config, make_config
from coach.data import Data, load_data
from coach.errors import UserError
from coach.evaluate import predict_proba, scores
from coach.search.halving import ARMS_PER_RUNG, halving, planned_epochs
from coach.search.space import parse_dim, quasi_random, too_few_trials
from coach.train import Run, fit
from coach.train.run import write_json

KNOWN = ("fashion-mnist", "mnist", "mnist1d", "digits", "cifar10")
PLAIN_LR = 3e-3
CHECK_SHARE = 0.04  # of the budget, for the babysitter's checks
COST_SHARE = 0.03  # at most, for timing the model sizes
REPORT_SECONDS = 3.5  # rendering the pages in a fresh process (matplotlib import, the run and sweep plots): 1-3 s measured


def data_section(data: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config's data section for a dataset name, an .npz or a folder, plus data.* options."""
    options = dict(options or {})
    if data in KNOWN:
        return {"name": data, **options}
    p = Path(data)
    if p.suffix == ".npz" and p.is_file():
        return {"name": "npz", "path": str(p), **options}
    if p.is_dir():
        return {"name": "image-folder", "path": str(p), "image_size": folder_image_size(p), **options}
    raise UserError(f"--data {data}: not a known dataset ({', '.join(KNOWN)}), an .npz file or a folder of images")


def folder_image_size(root: Path, default: int = 32, sample: int = 64) -> list[int]:
    """Small images keep their own size (upscaling only costs time); larger ones are resized
    to default x default. The median of a sample decides."""
    from PIL import Image, UnidentifiedImageError

    heights, widths = [], []
    for f in sorted(x for x in root.rglob("*") if x.is_file())[:sample]:
        try:
            with Image.open(f) as im:
                widths.append(im.width)
                heights.append(im.height)
        except (UnidentifiedImageError, OSError):
            continue  # the loader names unreadable files
    if not heights:
        return [default, default]
    mid = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return [min(mid(heights), default), min(mid(widths), default)]


def plain_recipe(data_cfg: dict[str, Any], data: Data, seed: int = 0) -> tuple[Config, str]:
    """The floor: the lectures' defaults for this shape of data, one-cycle to be sized to the time."""
    kind, shape = data.kind, data.input_shape
    if kind == "vector":
        model, why = {"name": "mlp", "width": 256, "depth": 2}, "flat vectors: an MLP"
    elif kind == "signal":
        model, why = {"name": "convnet", "width": 32, "depth": 2}, "1-D signals: a 1-D convnet"
    else:
        model, why = {"name": "convnet", "width": 32, "depth": 2 if min(shape[1:]) <= 32 else 3}, \
            f"{shape[0]}x{shape[1]}x{shape[2]} images: a VGG-style 2-D convnet"
    augment: dict[str, Any] = {}
    aug_why = ("no augmentation: whether " + " or ".join(k for k in P.augmentations(kind, shape) if k != "none")
               + " help is for validation to say" if len(P.augmentations(kind, shape)) > 1 else "no augmentation")
    cfg = make_config({"seed": seed, "data": {**data_cfg, "preprocess": "standardize"},
                       "model": {**model, "activation": "relu", "init": "kaiming", "norm": "batch"},
                       "optim": {"name": "adamw", "lr": PLAIN_LR, "weight_decay": 1e-4},
                       "schedule": {"name": "onecycle"}, "augment": augment,
                       "train": {"epochs": 10, "batch_size": 128, "progress": False, "monitor_every": 0}})
    return cfg, (f"{why}; inputs standardized per channel, Kaiming init with batch norm, AdamW at {PLAIN_LR:g} with a "
                 f"one-cycle schedule sized to the time; {aug_why}. This plain recipe is the floor: the autopilot "
                 "departs from it only on validation evidence")


def open_session(data: str | None, budget: float, out: str | Path | None, resume: str | Path | None,
                 started: float | None, quiet: bool, options: dict[str, Any]) -> tuple[Session, str, dict[str, Any]]:
    if resume is not None:
        out = Path(resume)
        if not (out / "state.json").exists():
            raise UserError(f"--resume {out}: not an autopilot session (no state.json)")
        prev = json.loads((out / "state.json").read_text())
        budget, data, options = prev["budget"], prev["data"], prev.get("data_options", {})
    if not data:
        raise UserError("--data NAME|PATH is required (or --resume DIR)")
    if not budget or not math.isfinite(budget) or budget <= 0:
        raise UserError(f"--budget {budget}: give a positive duration, e.g. 90s, 3m, 1h")
    out = Path(out) if out else Path("autopilot") / time.strftime(f"%Y%m%d-%H%M%S-{Path(str(data)).name}")
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, budget, started, quiet=quiet)
    s.state["data"], s.state["data_options"] = data, options
    return s, str(data), options


def autopilot(data: str | None = None, budget: float = 1200.0, out: str | Path | None = None,
              resume: str | Path | None = None, seed: int = 0, started: float | None = None,
              quiet: bool = False, data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the best model the budget (seconds) affords on `data` (a dataset name, an .npz
    file or a folder of images; `data_options`: other data.* settings, e.g. {"limit": 8000}).
    `started`: when the clock began (time.time(); the CLI passes the process's start),
    default now. Returns the result (also in OUT/result.json)."""
    s, data, options = open_session(data, budget, out, resume, started, quiet, dict(data_options or {}))
    threads = torch.get_num_threads()
    try:
        return run_stages(s, data, options, seed)
    finally:
        torch.set_num_threads(threads)  # the cost stage may have chosen fewer for this session


def run_stages(s: Session, data: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    data_cfg = data_section(data, options)
    loaded = load_data(make_config({"data": data_cfg}).data)
    floor, why = plain_recipe(data_cfg, loaded, seed)
    spe = P.steps_per_epoch(len(loaded.train), floor.train.batch_size)
    sizing = P.Sizing(spe, len(loaded.val))
    target, minimum, epochs_why = P.epochs_needed(len(loaded.train), floor.train.batch_size)

    # 1. the data and the floor ----------------------------------------------------------
    if not s.done("setup"):
        s.record("setup", {"decision": why, "data": {"kind": loaded.kind, "shape": list(loaded.input_shape),
                                                     "classes": loaded.num_classes, "train": len(loaded.train),
                                                     "val": len(loaded.val), "test": len(loaded.test)},
                           "config": floor.to_dict()})

    # 2-3. the cost model and the model size ---------------------------------------------
    if not s.done("cost"):
        threads, timed, known = choose_threads(floor, loaded)
        training = training_seconds(s, reserve=finish_seconds(s, None, loaded)) - CHECK_SHARE * s.budget
        plain_w = floor.model.width
        plain = known or time_config(floor, loaded)
        bound = P.compute_bound(training, sizing.epoch(plain))
        # compute-bound: every second trains, at the plain width unless it would get under the minimum
        # epochs (then narrower sizes are timed); otherwise the final's share leaves room for a search
        # and wider sizes are timed while they get the target epochs
        seconds = training if bound else (1 - P.SEARCH_SHARE) * training
        costs = measure_ladder(floor, loaded, lambda c: (target if c.width >= plain_w else minimum) * sizing.epoch(c)
                               <= seconds, COST_SHARE * s.budget, known=plain,
                               up=not bound or minimum * sizing.epoch(plain) <= seconds)
        pick, size_why = P.choose_width(costs, seconds, target, minimum, sizing, len(loaded.train), plain_w)
        regime = (f"compute-bound: the plain width gets {training / sizing.epoch(plain):.1f} epochs in the "
                  f"{training:.0f}s for training, under the lectures' {P.TARGET_EPOCHS}, so every "
                  "second trains (no search)" if bound else
                  f"the plain width gets {training / sizing.epoch(plain):.1f} epochs: room to search")
        s.record("cost", {"costs": [c.to_dict() for c in costs], "width": pick.width, "epochs": [target, minimum],
                          "threads": threads, "thread_steps": timed, "compute_bound": bound,
                          "decision": threads_why(threads, timed) + f"timed {len(costs)} sizes ("
                                      + ", ".join(f"width {c.width}: {sizing.epoch(c):.3g}s/epoch" for c in costs)
                                      + f"); {regime}; the final training needs {epochs_why}; chosen: {size_why}"})
    cost = Cost(**next(c for c in s.done("cost")["costs"] if c["width"] == s.done("cost")["width"]))
    if s.done("cost").get("threads"):
        torch.set_num_threads(s.done("cost")["threads"])  # a resumed session keeps the measured choice
    base = floor.replace(**{"model.width": cost.width})

    # 4. the babysitter's checks ---------------------------------------------------------
    if not s.done("check"):
        share = CHECK_SHARE * s.budget
        # the checks on the chosen model when their shortest version fits their share; else on the
        # cheapest size timed (they check the data and the setup, which do not depend on width)
        fits = lambda c: P.CHECK_STEP_FACTOR * P.MIN_PROBE_STEPS * c.step <= share  # noqa: E731
        checked = cost if fits(cost) else min(
            [Cost(**c) for c in s.done("cost")["costs"]] + [time_config(base.replace(**{"model.width": min(ladder(
                loaded.kind))}), loaded, steps=4)], key=lambda c: c.step)
        result = check(base.replace(**{"model.width": checked.width}), loaded, **P.check_steps(share, checked.step))
        write_json(s.out / "check.json", result.to_dict())
        fatal = [f for f in result.findings if f.severity == "error" and f.code in
                 ("label_problem", "gradient_check_failed")]
        lr, lr_why = floor_lr(result.steps.get("lr_probe", []))
        info = {"findings": [f.to_dict() for f in result.findings], "checked_width": checked.width,
                "suggested_lr": result.steps.get("lr_range", {}).get("suggested_lr"), "lr": lr,
                "decision": (f"stopping: {fatal[0].message}. {fatal[0].advice}" if fatal else
                             f"checks passed on width {checked.width} ({len(problems(result.findings))} warnings); "
                             + lr_why)}
        s.record("check", info)
        if fatal:
            return finish(s, None, loaded, stopped=info["decision"])
    base = base.replace(**{"optim.lr": s.done("check")["lr"]})

    # 5. the search ----------------------------------------------------------------------
    epoch_s = sizing.epoch(cost)
    if not s.done("search"):
        plan = P.plan_search(loaded.kind, loaded.input_shape, training_seconds(s, finish_seconds(s, cost, loaded, base)),
                             epoch_s, cost.step, max(minimum, P.TARGET_EPOCHS)) \
            if not s.done("cost")["compute_bound"] else P.no_search(loaded.kind, "compute-bound: every second trains")
        info: dict[str, Any] = {"plan": plan.to_dict(), "decision": plan.why, "winner": None}
        if plan.dims:
            rungs, labels = make_rungs(plan, base, loaded.kind, loaded.input_shape, seed)
            evidence: dict[str, Any] = {}

            def keep_going(k: int, rung: dict[int, dict[str, Any]]) -> bool:
                """After the plain recipe's trunk: search regularization only if its curves call for it."""
                if k == 0:
                    evidence.update(memorization(rung[0]["run_dir"], loaded))
                return bool(evidence["overfitting"])

            # One schedule for the whole lineage (warm-up, stable, decay; Hu et al. 2024's "WSD"):
            # the trunk warms up to the plain recipe's LR and every trial holds it, so a trial
            # continues its parent without a restart; trials are compared on their weights' moving
            # average, which at a constant LR stands in for the decay (Polyak averaging); the final
            # training does the decay. Trials validate once, at their end: a big validation split
            # every epoch would cost short trials more than their training.
            search_cfg = base.replace(**{"schedule.name": "constant", "schedule.warmup": 0.0,
                                         "train.eval_every": 10**9})
            settings = [{"schedule.warmup": 0.1, "train.ema": trial_ema(plan.trunk, cost.step)}] + [
                {"train.ema": trial_ema(r, cost.step)} for r in plan.rungs]
            summary = halving(search_cfg, [[{}]] + rungs, loaded, s.out / "sweep",
                              [plan.trunk] + plan.rungs, epoch_s, margin=lambda v: P.noise_margin(v, len(loaded.val)),
                              value=lambda run, cfg: arm_value(run, cfg, loaded), labels=[[{}]] + labels,
                              space=plan.space, keep_going=keep_going, settings=settings,
                              prior=lambda k, arm, rung: regularizer_prior(rungs[k - 1][arm], evidence),
                              deadline=time.time() + 1.25 * plan.seconds, on_trial=lambda r: s.say(trial_line(r)))
            info.update(search_outcome(summary, plan, evidence))
        s.record("search", info)
    sd = s.done("search")
    winner = sd["winner"]
    final_cfg = base.replace(**(winner["overrides"] if winner else {}))

    # 6. the winner's curves -------------------------------------------------------------
    if not s.done("curves"):
        findings = diagnose_run(winner["run_dir"]) if winner else []
        s.record("curves", {"findings": [f.to_dict() for f in findings],
                            "decision": "the winning trial's curves: " + (
                                "; ".join(f.message for f in findings) if findings else "healthy") if winner
                            else "no search trial to read"})

    # 7. the final model ------------------------------------------------------------------
    final_dir = s.out / "final"
    if not s.done("final"):
        run = train_final(s, final_cfg, loaded, final_dir, cost, sizing, winner, bool(sd.get("runner_up")))
        sm = run.summary
        start = (f"continued the winning trial ({winner['epochs_done']:.1f} epochs in the search, at a constant LR) "
                 "with the schedule's decay" if winner else "trained the plain recipe from scratch")
        ema = Run.open(final_dir).config.train.ema
        s.record("final", {"summary": sm, "continued_from": winner["run_dir"] if winner else None, "decision":
                           f"{start} for {sm['epochs']:.1f} {'more ' if winner else ''}epochs in {sm['time']:.0f}s, the "
                           f"{'cosine decay' if winner else 'one-cycle schedule'} fitted to the time left, "
                           + (f"EMA of the weights (decay {ema:.4g}, a window of ~10% of the run)" if ema else
                              f"no EMA (under {P.TARGET_EPOCHS} epochs)")
                           + f"; best val acc {sm['best']['value']:.4f}"})

    # 8. what helps, decided on the validation split -------------------------------------
    if not s.done("choose"):
        runner_up = sd.get("runner_up")
        seconds = max(s.left() - REPORT_SECONDS - planned_passes(final_cfg, loaded, True, bool(runner_up))[1]
                      * cost.eval_example, 0.0)
        s.record("choose", choose(final_dir, loaded, cost.eval_example, seconds,
                                  Path(runner_up) if runner_up else None))
    return finish(s, final_dir, loaded)


def floor_lr(probe: list[dict[str, Any]]) -> tuple[float, str]:
    """The plain recipe's AdamW 3e-3, unless the lectures' probe (a fresh model, ~100 steps at
    each of 1e-1, 1e-2, 1e-3, 1e-4 and 3e-3) shows it does not make the loss drop, or blows
    up, while another LR does: then the probe LR whose loss fell furthest."""
    mine = next((r for r in probe if r["lr"] == PLAIN_LR), None)
    working = [r for r in probe if r["drops"] and not r["diverged"]]
    if mine is None or not working or (mine["drops"] and not mine["diverged"]):
        return PLAIN_LR, (f"the lectures' LR probe saw AdamW's {PLAIN_LR:g} make the loss drop: the plain recipe keeps it"
                          if mine is not None and mine["drops"] else f"the plain recipe keeps AdamW's {PLAIN_LR:g}")
    best = min(working, key=lambda r: r["last"] / r["first"])
    what = "blew up" if mine["diverged"] else "did not make the loss drop"
    return best["lr"], (f"in the lectures' LR probe {PLAIN_LR:g} {what}; {best['lr']:g} made it fall furthest "
                        f"({best['first']:.3g} -> {best['last']:.3g}): the plain recipe trains at {best['lr']:g}")


def threads_why(threads: int, timed: dict[int, float]) -> str:
    if len(timed) < 2:
        return ""
    steps = ", ".join(f"{k} thread{'s' * (k > 1)} {v * 1000:.0f} ms" for k, v in timed.items())
    return f"{threads} CPU thread{'s' * (threads > 1)} (a step of the plain recipe took {steps}); "


def training_seconds(s: Session, reserve: float) -> float:
    """What is left for training: the budget less what has been used and what the end needs."""
    return max(s.left() - reserve, 1.0)


def finish_seconds(s: Session, cost: Cost | None, data: Data, cfg: Config | None = None, ema: bool = True,
                   runner_up: bool = True) -> float:
    """Seconds kept for choosing on validation, the test and the report: half a percent of the
    budget for the unforeseen, the pages, and (once the model is priced) its forward passes."""
    passes = 0.0
    if cost is not None and cfg is not None:
        val, test = planned_passes(cfg, data, ema, runner_up)
        passes = (val + test) * cost.eval_example
    return min(0.005 * s.budget + REPORT_SECONDS + passes, 0.12 * s.budget + REPORT_SECONDS)


def trial_ema(seconds: float, step_seconds: float) -> float:
    """An averaging window of about a third of a trial: at a constant LR, the average over the
    last stretch of weights is what a decay to zero would have reached (Polyak averaging)."""
    return min(0.9999, max(0.5, 1.0 - 3.0 / max(seconds / max(step_seconds, 1e-9), 6.0)))


def averaged_model(run: Run) -> Any:
    """A trial's EMA weights, with the batch-norm statistics averaged alongside them (a re-
    estimate would cost each trial a pass over training data), else its final weights."""
    return run.load_model("ema" if (run.dir / "weights" / "ema.safetensors").exists() else "final")


def arm_value(run: Run, cfg: Config, data: Data) -> float:
    """A trial's validation accuracy, on its averaged weights, mirror views averaged in when it
    trained on mirrors: what flips buy includes flip-TTA, and a model never shown mirrors is
    never judged on them."""
    tta = "flip" if cfg.augment.hflip else "none"
    return scores(predict_proba(averaged_model(run), data.val.x, tta), data.val.y)["acc"]


REGULARIZERS = ("augment.", "regularize.", "optim.weight_decay")


def memorization(run_dir: str | Path, data: Data) -> dict[str, Any]:
    """The lectures' sign of overfitting, read off a run: it fits its training data far better
    than validation (a gap of over 2 standard errors, the training error under half the
    validation error). Both measured in eval mode on as many examples."""
    run = Run.open(run_dir)
    n = min(len(data.val), len(data.train))
    model = averaged_model(run)
    train = scores(predict_proba(model, data.train.x[:n]), data.train.y[:n])["acc"]
    val = scores(predict_proba(model, data.val.x), data.val.y)["acc"]
    se = P.noise_margin(val, len(data.val))
    return {"epochs": run.summary["epochs"], "train_acc": train, "val_acc": val, "gap": train - val, "se": se,
            "overfitting": train - val > 2 * se and (1 - train) < 0.5 * (1 - val)}


def regularizer_prior(option: dict[str, Any], evidence: dict[str, Any]) -> float:
    """A trial shows what a regularizer (augmentation, label smoothing, weight decay) destroys
    (mirrored digits lose at once) sooner than what it buys, which comes late, against
    overfitting. So once the plain recipe has shown overfitting, an option that only adds
    regularization is kept unless it loses by more than the noise: it gets twice the
    incumbent's margin (one standard error)."""
    if not option or set(option) == {"seed"} or not all(k.startswith(REGULARIZERS) for k in option):
        return 0.0
    return 2 * evidence["se"] if evidence.get("overfitting") else 0.0


def make_rungs(plan: P.SearchPlan, base: Config, kind: str, shape: tuple[int, ...],
               seed: int) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """(overrides, labels) of each rung's options. Option 0 keeps the incumbent; the others are
    quasi-random values of the rung's dimension, on both sides of the plain recipe's value
    (every other value of a choice before any repeat). An option that changes nothing becomes
    a repeat of the incumbent with another seed: a measure of the noise."""
    presets = P.augmentations(kind, shape)
    rungs, labels = [], []
    for k, key in enumerate(plan.dims):
        dim = parse_dim(key, plan.space[key])
        floor = "none" if key == "augmentation" else value_at(base, key)
        options, names = [{}], [{}]
        for i, point in enumerate(quasi_random([dim], ARMS_PER_RUNG - 1, seed + k, first={key: floor}), start=1):
            over = presets[point[key]] if key == "augmentation" else {key: point[key]}
            if base.replace(**over) == base or over in options:
                over, point = {"seed": base.seed + 100 * k + i}, {**point, "seed": base.seed + 100 * k + i}
            options.append(over)
            names.append(point)
        rungs.append(options)
        labels.append(names)
    return rungs, labels


def value_at(cfg: Config, key: str) -> Any:
    node: Any = cfg.to_dict()
    for part in key.split("."):
        node = node[part]
    return node


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items()) or "the plain recipe"


def trial_line(r: dict[str, Any]) -> str:
    return (f"  rung {r['rung']} arm {r['arm']}: {describe(r['params']) if r['arm'] else 'unchanged'}: val {r['value']:.4f} in "
            f"{r['seconds']:.0f}s ({r['epochs']:.1f} epochs{', ' + r['status'] if r['status'] != 'completed' else ''})")


def search_outcome(summary: dict[str, Any], plan: P.SearchPlan, evidence: dict[str, Any]) -> dict[str, Any]:
    best = summary["best"]
    trials = summary["trials"]
    curves = (f"after {evidence['epochs']:.1f} epochs the plain recipe fits {evidence['train_acc']:.4f} of its "
              f"training data and {evidence['val_acc']:.4f} of validation" if evidence else "")
    if best is not None and summary.get("stopped_after") == 0:
        return {"winner": {"params": {}, "overrides": {}, "run_dir": best["run_dir"], "value": best["value"],
                           "epochs_done": trials[0]["epochs"]},
                "runner_up": None, "trials": len(trials), "time": summary["time"], "overfitting": evidence,
                "outcome": curves + ": no sign of overfitting (the lectures' gap), so regularization has nothing to "
                                    "fix; the time planned for trials goes to training it on"}
    finished = [t for t in trials if t["value"] is not None and t["stage"] != "rung-0"]
    decided = len({t["stage"] for t in finished if t["status"] == "promoted"})  # rungs that finished: 3 trials each
    if best is None or too_few_trials(len(finished), decided) or decided == 0:
        # the command center's rule: fewer than 3 finished trials per dimension decide nothing
        text = (f"only {len(finished)} of {plan.arms} trials finished in time: too few to decide "
                f"{len(plan.dims)} dimension(s); the plain recipe goes on")
        trunk = next((t for t in trials if t["stage"] == "rung-0" and t["value"] is not None), None)
        winner = None if trunk is None else {"params": {}, "overrides": {}, "run_dir": trunk["run_dir"],
                                             "value": trunk["value"], "epochs_done": trunk["epochs"]}
        return {"winner": winner, "runner_up": None, "trials": len(trials), "time": summary["time"],
                "overfitting": evidence, "outcome": text}
    last = [t for t in trials if t["stage"] == best["stage"]]
    runner = max((t for t in last if t["number"] != best["number"] and t["value"] is not None),
                 key=lambda t: t["value"], default=None)
    epochs_done = sum(t["epochs"] for t in trials if t["status"] == "promoted")
    winner = {"params": {k: v for t in trials if t["status"] == "promoted" for k, v in t["params"].items()},
              "overrides": best["overrides"], "run_dir": best["run_dir"], "value": best["value"],
              "epochs_done": epochs_done}
    steps = [curves + ": the lectures' sign of overfitting, so options that only add regularization are kept unless "
             "they lose by more than the noise"]
    if decided < len(plan.dims):
        steps.append(f"time ran out after {decided} of {len(plan.dims)} rungs: {', '.join(plan.dims[decided:])} "
                     "stay at the plain recipe's values")
    for k, stage in enumerate(summary["stages"][1:], start=1):  # rung 0 is the plain recipe's trunk
        rows = [t for t in trials if t["stage"] == stage["study"]]
        won = next((t for t in rows if t["status"] == "promoted"), None)
        if won is None:
            continue
        margin = summary["margins"].get(str(k), 0.0)
        steps.append(f"{plan.dims[k - 1]}: " + (f"kept ({won['value']:.4f}; no option beat it by more than the noise, "
                                                 f"{margin:.4f})" if won["number"] == 0 else
                                                 f"{describe(won['params'])} ({won['value']:.4f} against "
                                                 f"{rows[0]['value'] or 0:.4f} unchanged)"))
    return {"winner": winner, "runner_up": runner["run_dir"] if runner else None, "trials": len(trials),
            "time": summary["time"], "overfitting": evidence, "outcome": "; ".join(steps)}


def train_final(s: Session, cfg: Config, data: Data, final_dir: Path, cost: Cost, sizing: P.Sizing,
                winner: dict[str, Any] | None, runner_up: bool) -> Run:
    if (final_dir / "checkpoints" / "last.pt").exists() and not (final_dir / "summary.json").exists():
        return fit(resume=final_dir, data=data)
    # Polyak averaging pays on long runs; on a few epochs its window would hold the early, poor
    # weights, and validating it would double the validation time
    long = training_seconds(s, finish_seconds(s, cost, data, cfg)) >= P.TARGET_EPOCHS * sizing.epoch(cost)
    seconds = training_seconds(s, finish_seconds(s, cost, data, cfg, ema=long, runner_up=runner_up))
    epochs = min(P.MAX_FINAL_EPOCHS, planned_epochs(seconds, sizing.epoch(cost)))
    ema = P.ema_decay_for(epochs * sizing.steps_per_epoch) if long else None
    if winner:  # the lineage's decay: from the LR the trials held down to zero, no new warm-up
        cfg = cfg.replace(**{"schedule.name": "cosine", "schedule.warmup": 0.0})
    cfg = cfg.replace(**{"train.epochs": epochs, "train.ema": ema,
                         # the run keeps its closing validation's time itself; 1% for saving and exporting
                         "train.time_budget": 0.99 * seconds,
                         "train.fit_to_budget": True, "train.monitor_every": 50,
                         "train.eval_every": sizing.eval_every(cost)})
    model = Run.open(winner["run_dir"]).load_model("final") if winner else None
    return fit(cfg, run_dir=final_dir, data=data, model=model)


def finish(s: Session, final_dir: Path | None, data: Data, stopped: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"out": str(s.out), "stopped": stopped}
    if final_dir is not None:
        if not s.done("test"):
            choice = s.done("choose")["choice"]
            test = test_once(final_dir, choice, data)
            s.record("test", {"test_acc": test["acc"], "test_loss": test["loss"], "choice": choice,
                              "decision": f"test accuracy {test['acc']:.4f} (evaluated once, with "
                                          f"{s.done('choose')['pick']})"})
        result.update(s.done("test"))
        result["model_dir"] = str(final_dir)
    result["report"] = str(render_session(s))
    result["time"] = s.elapsed()
    write_json(s.out / "result.json", result)
    return result
