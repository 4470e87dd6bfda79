"""The autopilot's decisions, judged at the length that counts.

Each arm (the floor, then each option that departs from it in one thing) is trained from
scratch to the end of its own schedule at two lengths, in seconds, so arms of unequal cost
get equal compute and every run ends decayed ("budgeted training", Li, Yumer & Ramanan,
ICLR 2020). A run's validation error, its training accuracy and the validation examples it
got wrong are kept (sweep/decisions.json, written after every run: an interrupted session
resumes where it was, a half-trained run from its checkpoint). The floor runs first; the
gap its runs project to the final length orders the options (regularization first when it
overfits). Then `judge.judge` extrapolates each option's gain over the floor to the final
training's length (coach.sweep.curves) and adopts those that beat the noise. The floor's
own two runs already say how noisy that judgement will be (the extrapolation amplifies a
paired standard error ~2-3x): when it would be noisier than the gains worth finding, no
option is trained and their time trains the floor.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from coach.pilot import judge as J
from coach.pilot.session import Session
from coach.config import Config, save_config
from coach.data import Data
from coach.evaluate import predict_proba
from coach.fmt import seconds as duration_text, sig
from coach.nn.maker import BUILDER, Maker
from coach.sweep.engine import SearchInterrupted, TrialGuard
from coach.train import Run, fit
from coach.train.run import write_json


def planned_epochs(seconds: float, epoch_seconds: float) -> int:
    """Epochs to plan a run of `seconds` with (the schedule needs its length up front). A little
    long on purpose: fit_to_budget shortens the schedule to the measured pace, never lengthens it."""
    return int(max(1, math.ceil(1.25 * seconds / max(epoch_seconds, 1e-6))))


def train_for(cfg: Config, run_dir: Path, data: Data, seconds: float, epoch_seconds: float,
              maker: Maker = BUILDER) -> Run:
    """Train cfg from scratch for `seconds`, its schedule fitted to them (so it ends decayed);
    a run that already finished is read back, a half-finished one resumed. A run whose loss
    rises past 3x its start stops at once (the search's divergence guard)."""
    if (run_dir / "summary.json").exists() and Run.open(run_dir).summary.get("status") != "interrupted":
        return Run.open(run_dir)
    guard = [TrialGuard(None, cfg.train.monitor, report=False)]
    if (run_dir / "checkpoints" / "last.pt").exists():
        return fit(resume=run_dir, data=data, callbacks=guard, model=maker)
    cfg = cfg.replace(**{"train.time_budget": max(seconds, 1.0), "train.fit_to_budget": True,
                         "train.epochs": planned_epochs(seconds, epoch_seconds), "train.progress": False,
                         "train.max_rollbacks": 0, "train.max_nonfinite": 1, "train.eval_every": 10**9})
    return fit(cfg, run_dir=run_dir, data=data, model=maker, callbacks=guard)


def measure(run: Run, cfg: Config, data: Data, length: float) -> J.Measured:
    """A finished run's validation error (with the mirror views averaged in when it trained on
    mirrors: what flips buy includes flip-TTA, and a model never shown mirrors is never judged on
    them), its training accuracy on as many training examples (eval mode, no augmentation) and
    the validation examples it got wrong."""
    if (run.summary.get("stop_reason") or "").startswith("diverged"):
        return J.Measured(length, 1.0, 0.0, frozenset(range(len(data.val))))
    model = run.load_model("final")
    probs = predict_proba(model, data.val.x, "flip" if cfg.augment.hflip else "none")
    wrong = (probs.argmax(1) != data.val.y).nonzero().flatten().tolist()
    n = min(len(data.val), len(data.train))
    train_acc = (predict_proba(model, data.train.x[:n]).argmax(1) == data.train.y[:n]).float().mean().item()
    return J.Measured(length, len(wrong) / max(len(data.val), 1), train_acc, frozenset(wrong))


def to_json(m: J.Measured) -> dict[str, Any]:
    return {"seconds": m.seconds, "val_error": m.val_error, "train_acc": m.train_acc, "wrong": sorted(m.wrong)}


def from_json(d: dict[str, Any]) -> J.Measured:
    return J.Measured(d["seconds"], d["val_error"], d["train_acc"], frozenset(d["wrong"]))


def run_decisions(s: Session, plan: J.DecisionPlan, options: list[J.Option], floor: Config, data: Data,
                  epoch_s: float, deadline: float, maker: Maker = BUILDER) -> dict[str, Any]:
    """Train the floor's runs, order the options by the gap they project, train the options'
    runs while there is time (`deadline`, time.time(): after it the final training would get
    less than it needs), and judge. Returns the stage's record."""
    sweep = s.out / "sweep"
    sweep.mkdir(parents=True, exist_ok=True)
    save_config(floor, sweep / "config.yaml")
    path = sweep / "decisions.json"
    state = json.loads(path.read_text()) if path.exists() else {"runs": {}, "elapsed": 0.0}
    start = time.time() - state["elapsed"]
    n = len(data.val)

    def arm(name: str, overrides: dict[str, Any]) -> list[J.Measured]:
        out = []
        for i, seconds in enumerate(plan.lengths):
            key = f"{name}/{i}"
            if key not in state["runs"]:
                left = deadline - time.time()
                if left < 0.5 * seconds:
                    break  # out of time: this arm is judged on nothing it did not finish
                cfg = floor.replace(**overrides)
                run = train_for(cfg, sweep / "trials" / slug(name) / f"length-{i + 1}", data, seconds, epoch_s, maker)
                if run.summary["status"] == "interrupted":  # Ctrl-C: the run resumes from its checkpoint
                    state["elapsed"] = time.time() - start
                    write_json(path, state)
                    raise SearchInterrupted()
                state["runs"][key] = {"arm": name, "length": i, "overrides": overrides, "run_dir": str(run.dir),
                                      "epochs": run.summary["epochs"], "status": run.summary["status"],
                                      "time": run.summary["time"], **to_json(measure(run, cfg, data, seconds))}
                state["elapsed"] = time.time() - start
                write_json(path, state)
                r = state["runs"][key]
                s.say(f"  decision: {name}, {duration_text(r['time'])} ({sig(r['epochs'])} epochs): val "
                      f"{sig(1 - r['val_error'])}, train {sig(r['train_acc'])}")
            out.append(from_json(state["runs"][key]))
        return out

    base = arm("floor", {})
    if len(base) < len(plan.lengths):  # out of time before the floor's own runs: nothing to judge against
        write_json(sweep / "sweep.json", command_center(state, floor, [], time.time() - start))
        return {"overrides": {}, "tried": [], "runner_up": None, "time": time.time() - start,
                "outcome": "the floor's runs did not finish in time: no option was judged"}
    over = J.project_gap(base, plan.final, n)[2]
    # the floor's own two runs disagree about as much as two arms do (Fashion-MNIST: 3.6% of the
    # validation examples, the floor against mirror flips 3.4-3.8%): how noisy every judgement will
    # be is known before the options are paid for
    order = J.order_options(options, over)[:plan.arms - 1]
    noisy = too_noisy(base, plan, n, order)
    tried = [] if noisy else order
    results = {o.name: arm(o.name, o.overrides) for o in tried}
    judgement = J.judge(base, results, {o.name: o.group for o in options}, plan.final, n)
    adopted = {k: v for o in tried if o.name in judgement.adopted for k, v in o.overrides.items()}
    write_json(sweep / "sweep.json", command_center(state, floor, tried, time.time() - start))
    return {"judgement": judgement.to_dict(), "overrides": adopted, "tried": [o.name for o in tried],
            "runner_up": runner_up(state, judgement), "time": time.time() - start,
            "outcome": outcome(judgement, tried, plan, noisy)}


def too_noisy(floor: list[J.Measured], plan: J.DecisionPlan, n: int, options: list[J.Option]) -> str:
    """Why judging `options` is not worth their runs ("" when it is): the paired standard error
    of the floor's two runs, carried to the final length as `judge` will carry an option's
    gain, over plan.max_se."""
    share = len(floor[0].wrong ^ floor[-1].wrong) / max(n, 1)
    se = J.predicted_se(floor, J.paired(floor[0], floor[-1], n)[1], plan.final)
    if se <= plan.max_se or not options:
        return ""
    return (f"judging stopped before {', '.join(o.name for o in options)}: the floor's own runs disagree on "
            f"{share:.1%} of the {n} validation examples, and runs that differ as much would extrapolate to the "
            f"final's {duration_text(plan.final)} with a standard error of +-{se:.4f}, over the {plan.max_se:g} "
            "worth the time; the floor stands and the time their runs would take trains it")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "floor"


def runner_up(state: dict[str, Any], judgement: J.Judgement) -> str | None:
    """The longest run of the best option not adopted (an ensemble candidate the choose stage
    may take if it helps on validation)."""
    rest = [v for v in judgement.verdicts if not v.adopted]
    if not rest:
        return None
    best = max(rest, key=lambda v: v.predicted_acc)
    runs = [r for r in state["runs"].values() if r["arm"] == best.option]
    return max(runs, key=lambda r: r["length"])["run_dir"] if runs else None


def outcome(j: J.Judgement, tried: list[J.Option], plan: J.DecisionPlan, noisy: str = "") -> str:
    gaps = ", ".join(sig(g) for g in j.gaps)
    parts = [f"the floor's train-validation gap at {', '.join(duration_text(x) for x in plan.lengths)}: {gaps}; "
             f"projected to the final {duration_text(plan.final)}: {sig(j.gap)} (+-{sig(j.gap_se)}), "
             + ("overfitting: regularization first" if j.overfitting else
                "no sign of overfitting: less regularization or more capacity first")]
    for v in j.verdicts:
        parts.append(f"{v.option}: predicted {sig(v.predicted_acc)} against the floor's {sig(j.floor_acc)} "
                     f"(gain {v.gain:+.4f} +- {v.se:.4f}): " + ("adopted" if v.adopted else "not adopted"))
    missing = [o.name for o in tried if o.name not in {v.option for v in j.verdicts}]
    if noisy:
        parts.append(noisy)
    elif missing:
        parts.append(f"{', '.join(missing)}: not finished in time, not judged")
    return "; ".join(parts)


def command_center(state: dict[str, Any], floor: Config, tried: list[J.Option], elapsed: float) -> dict[str, Any]:
    """sweep.json in the command center's format: one row per complete run."""
    rows = [{"stage": f"length-{r['length'] + 1}", "number": i, "state": "COMPLETE", "value": 1 - r["val_error"],
             "params": {"option": r["arm"]}, "run_dir": r["run_dir"], "status": r["status"],
             "seconds": r["time"], "epochs": r["epochs"], "train_acc": r["train_acc"]}
            for i, r in enumerate(state["runs"].values())]
    space = {"option": "choice([" + ", ".join(json.dumps(n) for n in ["floor", *(o.name for o in tried)]) + "])"}
    stages = [{"study": st, "space": space,
               "trials": sum(r["stage"] == st for r in rows),
               "epochs": round(max((r["epochs"] for r in rows if r["stage"] == st), default=0), 2), "notes": []}
              for st in sorted({r["stage"] for r in rows})]
    return {"strategy": "lengths", "stages": stages, "trials": rows, "best": None, "time": elapsed,
            "monitor": floor.train.monitor, "mode": floor.train.mode, "space": space,
            "compute_steps": 0}
