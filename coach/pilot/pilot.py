"""`coach autopilot`: the whole recipe under a time budget, with the reason for every decision.

A careful practitioner following the lectures, with a stopwatch (coach.pilot.stages):

  1. setup    look at the data; the lectures' recipe for its shape is the floor (batch norm,
              Kaiming, AdamW 3e-3, one-cycle sized to the time, the standard augmentation,
              label smoothing, EMA on long runs)
  2. cost     the machine's speed (precision, layout, batch), the fastest CPU thread count
              now, a training step of each model size: the widest that gets the epochs it
              needs, then ensemble members when the width can grow no more
  3. check    the babysitter's checks; stop with the reason when training cannot work; the
              plain LR unless the lectures' probe shows it fails
  4. search   decisions judged at the length that counts, with the time the final does not
              need: each option trained to the end of its own schedule at two lengths, its
              gain over the floor extrapolated to the final length (coach.pilot.decide)
  5. curves   read the floor's longest decision run
  6. final    the adopted configuration from scratch for the time left (and its members)
  7. choose   on validation: best or EMA weights, test-time views it was trained on,
              ensembles; ties broken by the validation loss
  8. test     the test split, once; the report

Every stage is recorded in state.json with its decision, its reason and its seconds;
`--resume` continues after the last finished stage (search and final training resume
mid-way). The clock runs from the process's start and every stage plans with the time
that is actually left, so the session ends within the budget.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from coach.babysit.diagnose import chance_message, within_noise_of_chance
from coach.config import make_config, parse_duration
from coach.data import Data, load_data
from coach.data.memory import as_data, in_memory
from coach.errors import UserError
from coach.fmt import seconds as duration_text, sig
from coach.nn.maker import BUILDER, Maker, maker_for
from coach.pilot import plan as P
from coach.pilot.choose import test_once
from coach.pilot.recipe import data_section, plain_recipe
from coach.pilot.result import SessionResult
from coach.pilot.session import Session, SessionInterrupted, SessionState
from coach.pilot.stages import (WITHOUT, Pilot, check_stage, choose_stage, cost_stage, curves_stage, decide_stage,
                                final_stage, setup_stage)
from coach.sweep.engine import SearchInterrupted
from coach.train.loop import interrupt_flag
from coach.train.run import TempDir, write_json

@dataclass
class Request:
    """What a caller asked the autopilot for: the data (a name or path, or "arrays" for data
    held in memory, which the caller passes again to resume), the budget, data.* options, the
    seed and how the model is made (the user's model likewise passed again to resume)."""
    data: str | None
    budget: float
    options: dict[str, Any]
    seed: int = 0
    maker: Maker = BUILDER


def open_session(req: Request, out: str | Path | None, resume: str | Path | None, started: float | None,
                 quiet: bool) -> tuple[Session, Request]:
    """The session folder: a new one, or the interrupted one to resume, which keeps what it was
    started with (its data, budget and seed: the request's are replaced by them)."""
    if resume is not None:
        out = Path(resume)
        if not (out / "state.json").exists():
            raise UserError(f"--resume {out}: not an autopilot session (no state.json)")
        prev = SessionState.read(out / "state.json")
        if prev.data == "arrays" and req.data != "arrays":
            raise UserError(f"--resume {out}: this session trained on data passed in memory; pass the same data again "
                            "(coach.autopilot(data=..., resume=...))")
        if prev.model and req.maker.name is None:
            raise UserError(f"--resume {out}: this session trained your own model ({prev.model}); pass it again "
                            "(coach.autopilot(..., model=..., resume=...))")
        req = Request(prev.data, prev.budget, prev.data_options, prev.seed, req.maker)
    if not req.data:
        raise UserError("--data NAME|PATH is required (or --resume DIR)")
    if not req.budget or not math.isfinite(req.budget) or req.budget <= 0:
        raise UserError(f"--budget {req.budget}: give a positive duration, e.g. 90s, 3m, 1h")
    if req.data != "arrays":
        data_section(str(req.data), req.options)  # an unknown name or a missing file: refused before any folder is made
    out = Path(out) if out else Path("autopilot") / time.strftime(f"%Y%m%d-%H%M%S-{Path(str(req.data)).name}")
    if resume is None and (out / "state.json").exists():
        # a new session here would read the old one's stages and return its result as its own
        raise UserError(f"--out {out} already holds an autopilot session: continue it with --resume {out}, "
                        f"or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, req.budget, started, quiet=quiet)
    s.state.data, s.state.data_options, s.state.seed, s.state.model = req.data, req.options, req.seed, req.maker.name
    return s, req


def autopilot(data: str | Any = None, budget: float | str = 1200.0, out: str | Path | None = None,
              resume: str | Path | None = None, seed: int = 0, started: float | None = None,
              quiet: bool = False, data_options: dict[str, Any] | None = None,
              model: nn.Module | Callable[..., nn.Module] | None = None,
              without: tuple[str, ...] | list[str] = ()) -> SessionResult:
    """Train the best model the budget (seconds) affords on `data`: a dataset name, an .npz
    file or a folder of images, or data held in memory ((x, y) arrays or tensors, a dict, a
    torch Dataset or DataLoader: coach.data.memory); `data_options`: other data.* settings,
    e.g. {"limit": 8000}. model: your own nn.Module, or a function of hyperparameters that
    builds one (`lambda width: MyNet(width)`: the cost stage sizes the width; coach.nn.own),
    in place of coach's plain recipe model. `started`: when the clock began (time.time(); the
    CLI passes the process's start), default now. Returns the result (also in OUT/result.json);
    with data in memory and no `out`, the session lives in a temporary directory that
    result.save(path) keeps. without: decisions to force off, to see what each buys (WITHOUT:
    speed, augmentation, width, decisions, ema, tta)."""
    if isinstance(budget, str):  # "30s", "20m" as on the command line
        try:
            budget = parse_duration(budget)
        except ValueError as e:
            raise UserError(f"budget: {e}") from None
    maker = maker_for(model)
    unknown = sorted(set(without) - set(WITHOUT))
    if unknown:
        raise UserError(f"without: {', '.join(unknown)} is not a decision of the autopilot; allowed: "
                        f"{', '.join(WITHOUT)}")
    held = data if in_memory(data) and not isinstance(data, (str, os.PathLike)) else None
    keep = TempDir("coach-autopilot-") if held is not None and out is None and resume is None else None
    if keep is not None:
        out = keep.path
    s, req = open_session(Request("arrays" if held is not None else data, budget, dict(data_options or {}), seed,
                                  maker), out, resume, started, quiet)
    if resume is None:
        s.state.without = sorted(without)
    threads = torch.get_num_threads()
    try:
        with interrupt_flag() as interrupted:  # Ctrl-C: the running stage stops at a step, then the session
            s.interrupted = interrupted
            s.show_bar()
            return SessionResult(run_stages(s, req, held), s.out, keep)
    except SearchInterrupted:
        raise SessionInterrupted("search") from None
    finally:
        s.close_bar()
        torch.set_num_threads(threads)  # the cost stage may have chosen fewer for this session


def run_stages(s: Session, req: Request, held: Any = None) -> dict[str, Any]:
    data_cfg = {"name": "arrays", **req.options} if held is not None else data_section(str(req.data), req.options)
    loaded = as_data(held, make_config({"data": data_cfg}))[0] if held is not None else \
        load_data(make_config({"data": data_cfg}).data)
    maker, seed = req.maker, req.seed
    without = frozenset(s.state.without)
    floor, why = plain_recipe(data_cfg, loaded, seed, maker, augment="augmentation" not in without)
    maker.honoured(floor)
    spe = P.steps_per_epoch(len(loaded.train), floor.train.batch_size)
    augmented = floor.augment != make_config({}).augment
    pilot = Pilot(s, loaded, floor, why, P.Sizing(spe, len(loaded.val)),
                  P.epochs_needed(len(loaded.train), floor.train.batch_size, augmented), maker, without)
    for name, stage in (("setup", setup_stage), ("cost", cost_stage), ("check", check_stage),
                        ("search", decide_stage), ("curves", curves_stage), ("final", final_stage),
                        ("choose", choose_stage)):
        if not s.done(name):
            stopped = stage(pilot)
            if stopped:
                return finish(s, None, loaded, stopped=stopped)
    return finish(s, s.out / "final", loaded)


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
    from coach.pilot.page import render_session  # matplotlib: imported when a page is drawn
    result["report"] = str(render_session(s))
    result["time"] = s.elapsed()
    write_json(s.out / "result.json", result)
    return result
