"""Successive halving with continuation, one dimension per rung, budgets in seconds
(Jamieson & Talwalkar 2016; Li et al., "Hyperband", JMLR 2018; Jaderberg et al., "Population
Based Training", 2017; the lectures' "learning rate first, then the rest": block coordinate
descent).

Rung k tries the options of one dimension: arm 0 is the incumbent unchanged (at rung 0 the
plain recipe), the others change only that dimension. Every arm trains `rungs[k]` seconds
with its LR schedule fitted to those seconds, so arms are compared at the end of their own
schedule ("budgeted convergence", Li, Yumer & Ramanan, ICLR 2020), never cut off mid-way.
The best third (one of three) survives: from rung 1 on, every arm *continues from the
incumbent's weights* (PBT's exploit-and-explore), so what the survivor learned is never
thrown away and later dimensions are compared at a longer horizon, where regularization
shows what it buys. Budgets are seconds, not epochs, so arms of unequal cost get equal
compute. Optuna's pruners stop trials but cannot continue them: this is coach's own.

The incumbent keeps its place unless an arm beats it on validation by more than `margin`:
a difference smaller than the noise is not an improvement (the Tuning Playbook).

Each arm of each rung is an ordinary run directory (sweep/trials/rung-1/arm-2); sweep.json
has the command center's format; halving.json is the progress, written after every trial,
so an interrupted search resumes where it was (a half-trained arm from its checkpoint).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from coach.config import Config, save_config
from coach.data import Data
from coach.nn.own import Own
from coach.search.engine import SearchInterrupted, TrialGuard
from coach.train import Run, fit
from coach.train.run import write_json

Value = Callable[[Run, Config], float]
OnTrial = Callable[[dict[str, Any]], None]
Prior = Callable[[int, int, dict[int, dict[str, Any]]], float]  # (rung, arm, results of the rung by arm)
ARMS_PER_RUNG = 3  # the best third survives


def losers_seconds(rungs: list[float], arms: int = ARMS_PER_RUNG) -> float:
    """Training seconds spent on arms that do not win: the search's cost beyond the winner's own
    training, which the final run continues."""
    return (arms - 1) * sum(rungs)


def planned_epochs(seconds: float, epoch_seconds: float) -> int:
    """Epochs to plan a run of `seconds` with (the schedule needs its length up front). A little
    long on purpose: fit_to_budget shortens the schedule to the measured pace, never lengthens it."""
    return int(max(1, math.ceil(1.25 * seconds / max(epoch_seconds, 1e-6))))


class ContinuationGuard(TrialGuard):
    """The search's divergence stop, for trials that may start from trained weights: "3x the
    initial loss" is measured against at least the loss of guessing (log C), not the tiny loss
    a trained model starts a continuation with (a re-warmed LR raises that for a while)."""

    def on_step_end(self, t: Any, logs: dict[str, Any]) -> None:
        if self.first is None:
            self.first = max(logs["loss"], math.log(max(t.data.num_classes, 2)))
        super().on_step_end(t, logs)


def train_for(cfg: Config, run_dir: Path, data: Data, seconds: float, epoch_seconds: float,
              parent: Path | None = None, own: Own | None = None) -> Run:
    """Train cfg for `seconds` with the schedule fitted to them, from the weights of run `parent`
    when given; a run that already finished is read back, a half-finished one resumed.
    own: the user's module or factory (coach.nn.own) the trials train."""
    if (run_dir / "summary.json").exists() and Run.open(run_dir).summary.get("status") != "interrupted":
        return Run.open(run_dir)
    guard = lambda c: [ContinuationGuard(None, c.train.monitor, report=False)]  # noqa: E731
    if (run_dir / "checkpoints" / "last.pt").exists():
        resumed = Run.open(run_dir).config
        return fit(resume=run_dir, data=data, callbacks=guard(resumed), model=own)
    cfg = cfg.replace(**{"train.time_budget": max(seconds, 1.0), "train.fit_to_budget": True,
                         "train.epochs": planned_epochs(seconds, epoch_seconds), "train.progress": False,
                         "train.max_rollbacks": 0, "train.max_nonfinite": 1})
    template = own.net(cfg, data.input_shape, data.num_classes) if own is not None else None
    model = Run.open(parent).load_model("final", model=template).train() if parent is not None else own
    return fit(cfg, run_dir=run_dir, data=data, model=model, callbacks=guard(cfg))


def final_value(run: Run, cfg: Config) -> float:
    return float(run.summary["final"][cfg.train.monitor])


def halving(base: Config, rungs: list[list[dict[str, Any]]], data: Data, sweep_dir: str | Path,
            seconds: list[float], epoch_seconds: float, margin: float | Callable[[float], float] = 0.0,
            value: Value = final_value, prior: Prior | None = None, labels: list[list[dict[str, Any]]] | None = None,
            space: dict[str, str] | None = None, deadline: float | None = None,
            on_trial: OnTrial | None = None,
            keep_going: Callable[[int, dict[int, dict[str, Any]]], bool] | None = None,
            settings: list[dict[str, Any]] | None = None, own: Own | None = None) -> dict[str, Any]:
    """Run (or resume) the search. `rungs[k]`: the options of rung k's dimension, as config
    overrides; option 0 changes nothing (the incumbent). `seconds[k]`: what each arm of rung k
    trains. `margin`: the incumbent's advantage, or a function of its value (a standard
    error); `prior(rung, arm, results)`: a further advantage from evidence other than the
    arm's value. `keep_going(rung, results)`: asked after each rung; False ends the search
    there (what the curves show may make the remaining rungs pointless). `labels`: how options
    are shown. `settings[k]`: overrides for every arm of rung k that the winner does not carry
    on (its schedule's warm-up, its averaging window). `deadline` (time.time()) cuts the
    search short: a rung left unfinished keeps its incumbent. Returns the sweep summary, with the winner (its accumulated overrides and
    the run directory the final training continues)."""
    if len(seconds) != len(rungs) or any(not r or r[0] for r in rungs):
        raise ValueError("halving: one length per rung, and each rung's option 0 must be {} (the incumbent)")
    sweep = Path(sweep_dir)
    sweep.mkdir(parents=True, exist_ok=True)
    save_config(base, sweep / "config.yaml")
    state_path = sweep / "halving.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {
        "rungs": rungs, "labels": labels or rungs, "seconds": seconds, "results": {}, "margins": {}}
    rungs, labels, seconds = state["rungs"], state["labels"], state["seconds"]  # a resumed search keeps its plan
    higher = base.train.mode == "max"
    start = time.time() - state.get("elapsed", 0.0)
    incumbent: dict[str, Any] = {}  # the winner's accumulated overrides
    parent: Path | None = None
    champion: dict[str, Any] | None = None
    for k, options in enumerate(rungs):
        results: dict[int, dict[str, Any]] = {}
        for i, option in enumerate(options):
            key = f"{k}/{i}"
            if key not in state["results"]:
                left = None if deadline is None else deadline - time.time()
                if left is not None and left < 1.0:
                    continue  # out of time
                cfg = base.replace(**{**incumbent, **option, **(settings[k] if settings else {})})
                run_dir = sweep / "trials" / f"rung-{k}" / f"arm-{i}"
                run = train_for(cfg, run_dir, data, seconds[k] if left is None else min(seconds[k], left),
                                epoch_seconds, parent, own)
                s = run.summary
                if s["status"] == "interrupted":  # Ctrl-C: not a result; the arm resumes from its checkpoint
                    state["elapsed"] = time.time() - start
                    write_json(state_path, state)
                    raise SearchInterrupted()
                diverged = (s.get("stop_reason") or "").startswith("diverged")
                v = (-math.inf if higher else math.inf) if diverged else value(run, cfg)
                state["results"][key] = {"rung": k, "arm": i, "run_dir": str(run_dir), "value": v,
                                         "steps": s["steps"], "seconds": s["time"], "epochs": s["epochs"],
                                         "status": "diverged" if diverged else s["status"]}
                state["elapsed"] = time.time() - start
                write_json(state_path, state)
                if on_trial:
                    on_trial({**state["results"][key], "params": labels[k][i], "of": len(options)})
            results[i] = state["results"][key]
        if 0 not in results or len(results) < len(options):
            break  # the rung did not finish: its incumbent stands
        floor = results[0]["value"]
        bonus = margin(floor) if callable(margin) and math.isfinite(floor) else margin if not callable(margin) else 0.0
        state["margins"][str(k)] = bonus
        for i, r in results.items():
            r["prior"] = prior(k, i, results) if prior and i else 0.0
        score = lambda r: (r["value"] if higher else -r["value"]) + (bonus if r["arm"] == 0 else 0.0) \
            + r["prior"]  # noqa: E731
        best = max(results.values(), key=score)  # ties: the incumbent (arm 0 comes first)
        for r in results.values():
            r["status"] = "promoted" if r is best else ("diverged" if r["status"] == "diverged" else "stopped")
        write_json(state_path, state)
        incumbent = {**incumbent, **options[best["arm"]]}
        parent, champion = Path(best["run_dir"]), {**best, "overrides": incumbent}
        if keep_going is not None and k + 1 < len(rungs) and not keep_going(k, results):
            state["stopped_after"] = k
            break
    summary = _summary(base, state, space or {}, champion, time.time() - start)
    write_json(sweep / "sweep.json", summary)
    return summary


def _summary(base: Config, state: dict[str, Any], space: dict[str, str], champion: dict[str, Any] | None,
             elapsed: float) -> dict[str, Any]:
    """The command center's sweep.json: one row per arm of each rung."""
    rows = []
    for r in sorted(state["results"].values(), key=lambda r: (r["rung"], r["arm"])):
        rows.append({"stage": f"rung-{r['rung']}", "number": r["arm"], "state": "COMPLETE",
                     "value": r["value"] if math.isfinite(r["value"]) else None,
                     "params": state["labels"][r["rung"]][r["arm"]], "run_dir": r["run_dir"],
                     "status": r["status"], "steps": r["steps"], "seconds": r["seconds"], "epochs": r["epochs"],
                     "prior": r.get("prior", 0.0)})
    run = sorted({r["rung"] for r in state["results"].values()})
    stages = [{"study": f"rung-{k}", "space": {key: expr for key, expr in space.items()
                                               if any(key in lab for lab in state["labels"][k])},
               "trials": sum(r["rung"] == k for r in state["results"].values()),
               "epochs": round(max((r["epochs"] for r in state["results"].values() if r["rung"] == k), default=0), 2),
               "notes": []} for k in run]
    searched = {key: expr for st in stages for key, expr in st["space"].items()}  # the dimensions actually tried
    best = None if champion is None else {
        "stage": f"rung-{champion['rung']}", "number": champion["arm"], "value": champion["value"],
        "params": state["labels"][champion["rung"]][champion["arm"]], "overrides": champion["overrides"],
        "run_dir": champion["run_dir"], "rung": champion["rung"], "arm": champion["arm"]}
    return {"strategy": "halving", "stages": stages, "trials": rows, "best": best, "time": elapsed,
            "monitor": base.train.monitor, "mode": base.train.mode, "compute_steps": sum(r["steps"] for r in rows),
            "space": searched, "margins": state.get("margins", {}), "stopped_after": state.get("stopped_after")}
