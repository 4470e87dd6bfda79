"""`coach autopilot`: the whole recipe under a time budget, with the reason for every decision.

A careful practitioner following the lectures, with a stopwatch:

  1. setup    look at the data; the plain recipe for its shape is the floor (BN, Kaiming,
              AdamW 3e-3, one-cycle sized to the time, no augmentation)
  2. cost     the fastest CPU thread count now; a training step of each model size
  3. size     compute-bound: the plain width for every second; otherwise the widest model
              whose final training gets the epochs it needs
  4. check    the babysitter's checks; stop with the reason when training cannot work; the
              plain LR unless the lectures' probe shows it fails
  5. search   not when compute-bound: the plain recipe trains first, its curves are read,
              and regularization rungs (3 trials a dimension, continuing from the best so
              far) only when they show overfitting (`trials`)
  6. curves   read the winner's curves
  7. final    the winner continues for the time left, the schedule's decay fitted to it
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
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from coach.autopilot import plan as P
from coach.autopilot.choose import choose, planned_passes, test_once
from coach.autopilot.cost import Cost, choose_threads, ladder, measure_ladder, time_config
from coach.autopilot.recipe import data_section, floor_lr, plain_recipe
from coach.autopilot.session import EpochLines, Session, SessionInterrupted
from coach.autopilot.trials import run_search
from coach.babysit import check, diagnose_run, problems
from coach.babysit.diagnose import chance_message, within_noise_of_chance
from coach.config import Config, make_config, parse_duration
from coach.data import Data, load_data
from coach.data.memory import as_data, in_memory
from coach.babysit.checks.controls import can_widen
from coach.nn.own import Own, as_own
from coach.errors import UserError
from coach.fmt import seconds as duration_text, sig
from coach.search.engine import SearchInterrupted
from coach.search.halving import planned_epochs
from coach.train import Run, fit
from coach.train.loop import interrupt_flag, pick_device
from coach.train.run import TempDir, write_json
from coach.autopilot.result import SessionResult

CHECK_SHARE = 0.04  # of the budget, for the babysitter's checks
COST_SHARE = 0.03  # at most, for timing the model sizes
REPORT_SECONDS = 3.5  # rendering the pages in a fresh process (matplotlib import, the run and sweep plots): 1-3 s measured


def open_session(data: str | None, budget: float, out: str | Path | None, resume: str | Path | None,
                 started: float | None, quiet: bool, options: dict[str, Any],
                 seed: int = 0, own: Own | None = None) -> tuple[Session, str, dict[str, Any], int]:
    """data: a name or path, or "arrays" for data held in memory (the caller passes them again
    to resume). own: the user's model, likewise needed again to resume."""
    if resume is not None:
        out = Path(resume)
        if not (out / "state.json").exists():
            raise UserError(f"--resume {out}: not an autopilot session (no state.json)")
        prev = json.loads((out / "state.json").read_text())
        if prev["data"] == "arrays" and data != "arrays":
            raise UserError(f"--resume {out}: this session trained on data passed in memory; pass the same data again "
                            "(coach.autopilot(data=..., resume=...))")
        if prev.get("model") and own is None:
            raise UserError(f"--resume {out}: this session trained your own model ({prev['model']}); pass it again "
                            "(coach.autopilot(..., model=..., resume=...))")
        # the session keeps what it was started with: its data, budget and seed
        budget, data, options, seed = prev["budget"], prev["data"], prev.get("data_options", {}), prev.get("seed", seed)
    if not data:
        raise UserError("--data NAME|PATH is required (or --resume DIR)")
    if not budget or not math.isfinite(budget) or budget <= 0:
        raise UserError(f"--budget {budget}: give a positive duration, e.g. 90s, 3m, 1h")
    if data != "arrays":
        data_section(str(data), options)  # an unknown name or a missing file: refused before any folder is made
    out = Path(out) if out else Path("autopilot") / time.strftime(f"%Y%m%d-%H%M%S-{Path(str(data)).name}")
    if resume is None and (out / "state.json").exists():
        # a new session here would read the old one's stages and return its result as its own
        raise UserError(f"--out {out} already holds an autopilot session: continue it with --resume {out}, "
                        f"or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, budget, started, quiet=quiet)
    s.state["data"], s.state["data_options"], s.state["seed"] = data, options, seed
    s.state["model"] = own.name if own is not None else None
    return s, str(data), options, seed


def autopilot(data: str | Any = None, budget: float | str = 1200.0, out: str | Path | None = None,
              resume: str | Path | None = None, seed: int = 0, started: float | None = None,
              quiet: bool = False, data_options: dict[str, Any] | None = None,
              model: nn.Module | Callable[..., nn.Module] | None = None) -> SessionResult:
    """Train the best model the budget (seconds) affords on `data`: a dataset name, an .npz
    file or a folder of images, or data held in memory ((x, y) arrays or tensors, a dict, a
    torch Dataset or DataLoader: coach.data.memory); `data_options`: other data.* settings,
    e.g. {"limit": 8000}. model: your own nn.Module, or a function of hyperparameters that
    builds one (`lambda width: MyNet(width)`: the cost stage sizes the width; coach.nn.own),
    in place of coach's plain recipe model. `started`: when the clock began (time.time(); the
    CLI passes the process's start), default now. Returns the result (also in OUT/result.json);
    with data in memory and no `out`, the session lives in a temporary directory that
    result.save(path) keeps."""
    if isinstance(budget, str):  # "30s", "20m" as on the command line
        try:
            budget = parse_duration(budget)
        except ValueError as e:
            raise UserError(f"budget: {e}") from None
    own = as_own(model)
    held = data if in_memory(data) and not isinstance(data, (str, os.PathLike)) else None
    keep = TempDir("coach-autopilot-") if held is not None and out is None and resume is None else None
    if keep is not None:
        out = keep.path
    s, name, options, seed = open_session("arrays" if held is not None else data, budget, out, resume, started,
                                          quiet, dict(data_options or {}), seed, own)
    threads = torch.get_num_threads()
    try:
        with interrupt_flag() as interrupted:  # Ctrl-C: the running stage stops at a step, then the session
            s.interrupted = interrupted
            s.show_bar()
            return SessionResult(run_stages(s, name, options, seed, own, held), s.out, keep)
    except SearchInterrupted:
        raise SessionInterrupted("search") from None
    finally:
        s.close_bar()
        torch.set_num_threads(threads)  # the cost stage may have chosen fewer for this session


def run_stages(s: Session, data: str, options: dict[str, Any], seed: int, own: Own | None = None,
               held: Any = None) -> dict[str, Any]:
    data_cfg = {"name": "arrays", **options} if held is not None else data_section(data, options)
    loaded = as_data(held, make_config({"data": data_cfg}))[0] if held is not None else \
        load_data(make_config({"data": data_cfg}).data)
    floor, why = plain_recipe(data_cfg, loaded, seed, own)
    if own is not None:
        own.honoured(floor)
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
        threads, timed, known = choose_threads(floor, loaded, own=own)
        training = training_seconds(s, reserve=finish_seconds(s, None, loaded)) - CHECK_SHARE * s.budget
        plain_w = floor.model.width
        plain = known or time_config(floor, loaded, own=own)
        bound = P.compute_bound(training, sizing.epoch(plain))
        # compute-bound: every second trains, at the plain width unless it would get under the minimum
        # epochs (then narrower sizes are timed); otherwise the final's share leaves room for a search
        # and wider sizes are timed while they get the target epochs
        seconds = training if bound else (1 - P.SEARCH_SHARE) * training
        costs = measure_ladder(floor, loaded, lambda c: (target if c.width >= plain_w else minimum) * sizing.epoch(c)
                               <= seconds, COST_SHARE * s.budget, known=plain,
                               up=not bound or minimum * sizing.epoch(plain) <= seconds, own=own,
                               # your own module has one size, unless its factory takes a width
                               widths=None if can_widen(own) else (plain_w,))
        pick, size_why = P.choose_width(costs, seconds, target, minimum, sizing, len(loaded.train), plain_w)
        regime = (f"compute-bound: the plain width gets {training / sizing.epoch(plain):.1f} epochs in the "
                  f"{training:.0f}s for training, under the lectures' {P.TARGET_EPOCHS}, so every "
                  "second trains (no search)" if bound else
                  f"the plain width gets {training / sizing.epoch(plain):.1f} epochs: room to search")
        s.record("cost", {"costs": [c.to_dict() for c in costs], "width": pick.width, "epochs": [target, minimum],
                          "planned": COST_SHARE * s.budget,
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
        checked = check_cost(base, loaded, cost, [Cost(**c) for c in s.done("cost")["costs"]], share,
                             pick_device(base.train.device).type, own)
        # without step 5's control models: their cost is not bounded by the share, and the autopilot
        # acts only on the fatal findings (labels, gradients) and the LR probe
        result = check(base.replace(**{"model.width": checked.width}), loaded, **P.check_steps(share, checked.step),
                       controls=False, model=own)
        write_json(s.out / "check.json", result.to_dict())
        fatal = [f for f in result.findings if f.severity == "error" and f.code in
                 ("label_problem", "gradient_check_failed")]
        lr, lr_why = floor_lr(result.steps.get("lr_probe", []))
        info = {"findings": [f.to_dict() for f in result.findings], "checked_width": checked.width, "planned": share,
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
        info: dict[str, Any] = {"plan": plan.to_dict(), "decision": plan.why, "winner": None, "planned": plan.seconds}
        if plan.dims:
            info.update(run_search(s, plan, base, loaded, cost, epoch_s, seed, own))
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
        left = s.left() - finish_seconds(s, cost, loaded, final_cfg)
        short = (f"only {duration_text(max(left, 0))} were left for the final training (under one epoch, "
                 f"{duration_text(sizing.epoch(cost))}): it trained for what was left, never under 1 s; "
                 if left < sizing.epoch(cost) else "")
        run = train_final(s, final_cfg, loaded, final_dir, cost, sizing, winner, bool(sd.get("runner_up")), own)
        if run.summary["status"] == "interrupted":
            raise SessionInterrupted("final training")
        sm = run.summary
        start = (f"continued the winning trial ({winner['epochs_done']:.1f} epochs in the search, at a constant LR) "
                 "with the schedule's decay" if winner else "trained the plain recipe from scratch")
        ema = Run.open(final_dir).config.train.ema
        s.record("final", {"summary": sm, "continued_from": winner["run_dir"] if winner else None,
                           "planned": Run.open(final_dir).config.train.time_budget, "decision":
                           f"{short}{start} for {sm['epochs']:.1f} {'more ' if winner else ''}epochs in {sm['time']:.0f}s, the "
                           f"{'cosine decay' if winner else 'one-cycle schedule'} fitted to the time left, "
                           + (f"EMA of the weights (decay {ema:.4g}, a window of ~10% of the run)" if ema else
                              f"no EMA (under {P.TARGET_EPOCHS} epochs)")
                           + f"; best val acc {sig(sm['best']['value'])}"})

    # 8. what helps, decided on the validation split -------------------------------------
    if not s.done("choose"):
        runner_up = sd.get("runner_up")
        seconds = max(s.left() - REPORT_SECONDS - planned_passes(final_cfg, loaded, True, bool(runner_up))[1]
                      * cost.eval_example, 0.0)
        s.record("choose", {**choose(final_dir, loaded, cost.eval_example, seconds,
                                     Path(runner_up) if runner_up else None, s.out / "val-predictions.npz",
                                     own.net(final_cfg, loaded.input_shape, loaded.num_classes) if own else None),
                            "planned": seconds})
    return finish(s, final_dir, loaded)


def check_cost(cfg: Config, data: Data, cost: Cost, timed: list[Cost], share: float, device: str,
               own: Own | None = None, measure: Callable[..., Cost] = time_config) -> Cost:
    """The model the checks run on and what its training step costs where they run. The checks
    take the chosen width when their shortest version fits their share, else the cheapest size
    (they check the data and the setup, which do not depend on width). coach check trains its
    small models on the CPU whatever the training device, so on a GPU the sizes are timed on the
    CPU: priced by the GPU's step, a 60 s session's checks planned 2 s and ran over 90 s."""
    fits = lambda c: P.CHECK_STEP_FACTOR * P.MIN_PROBE_STEPS * c.step <= share  # noqa: E731
    smallest = min(ladder(data.kind)) if can_widen(own) else cost.width  # your module has one size
    if device == "cpu":
        return cost if fits(cost) else min(
            timed + [measure(cfg.replace(**{"model.width": smallest}), data, steps=4, own=own)], key=lambda c: c.step)
    cpu = cfg.replace(**{"train.device": "cpu"})
    chosen = measure(cpu.replace(**{"model.width": cost.width}), data, steps=4, own=own)
    return chosen if fits(chosen) else min(
        [chosen, measure(cpu.replace(**{"model.width": smallest}), data, steps=4, own=own)], key=lambda c: c.step)


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


def train_final(s: Session, cfg: Config, data: Data, final_dir: Path, cost: Cost, sizing: P.Sizing,
                winner: dict[str, Any] | None, runner_up: bool, own: Own | None = None) -> Run:
    cut = (final_dir / "summary.json").exists() and Run.open(final_dir).summary.get("status") == "interrupted"
    if (final_dir / "checkpoints" / "last.pt").exists() and (cut or not (final_dir / "summary.json").exists()):
        return fit(resume=final_dir, data=data, callbacks=[EpochLines(s)], model=own)
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
    template = own.net(cfg, data.input_shape, data.num_classes) if own is not None else None
    model = Run.open(winner["run_dir"]).load_model("final", model=template).train() if winner else own
    return fit(cfg, run_dir=final_dir, data=data, model=model, callbacks=[EpochLines(s)])


def finish(s: Session, final_dir: Path | None, data: Data, stopped: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"out": str(s.out), "stopped": stopped}
    if final_dir is not None:
        if not s.done("test"):
            choice = s.done("choose")["choice"]
            test = test_once(final_dir, choice, data)
            failed = None
            if within_noise_of_chance(test["acc"], len(data.test), data.num_classes):
                final = s.done("final")["summary"]
                cause = (f"training diverged ({final['stop_reason']})" if final["status"] == "diverged" else
                         f"the final training had {duration_text(final['time'])} ({sig(final['epochs'])} epochs)"
                         + (": the budget was too short for this data on this machine; give a longer --budget"
                            if final["epochs"] < 1 else ""))
                failed = f"{chance_message(test['acc'], data.num_classes, 'test')}; likely cause: {cause}"
            s.record("test", {"test_acc": test["acc"], "test_loss": test["loss"], "choice": choice, "failed": failed,
                              "decision": f"test accuracy {sig(test['acc'])} (evaluated once, with "
                                          f"{s.done('choose')['pick']})"})
        result.update(s.done("test"))
        if result.get("failed"):
            result["stopped"] = result["failed"]
        result["model_dir"] = str(final_dir)
    from coach.autopilot.page import render_session  # matplotlib: imported when a page is drawn
    result["report"] = str(render_session(s))
    result["time"] = s.elapsed()
    write_json(s.out / "result.json", result)
    return result
