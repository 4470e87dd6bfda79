"""The autopilot's search stage: the plain recipe trains first (the trunk), its curves are
read, and only if they show overfitting do regularization rungs branch from it (coach's
successive halving with continuation, `coach.search.halving`), one schedule for the whole
lineage."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from coach.autopilot import plan as P
from coach.autopilot.cost import Cost
from coach.autopilot.session import Session
from coach.config import Config
from coach.data import Data
from coach.nn.own import Own
from coach.evaluate import predict_proba, scores
from coach.fmt import seconds, sig
from coach.search.halving import ARMS_PER_RUNG, halving
from coach.search.space import parse_dim, quasi_random, too_few_trials
from coach.train import Run


def run_search(s: Session, plan: P.SearchPlan, base: Config, loaded: Data, cost: Cost, epoch_s: float,
               seed: int, own: Own | None = None) -> dict[str, Any]:
    """The plain recipe's trunk, its curves read, then the regularization rungs it calls for."""
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
                      deadline=time.time() + 1.25 * plan.seconds, on_trial=lambda r: s.say(trial_line(r)), own=own)
    return search_outcome(summary, plan, evidence)


REGULARIZERS = ("augment.", "regularize.", "optim.weight_decay")


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
    return (f"  trial: rung {r['rung']} arm {r['arm']}: {describe(r['params']) if r['arm'] else 'unchanged'}: "
            f"val {sig(r['value'])} in {seconds(r['seconds'])} ({sig(r['epochs'])} epochs"
            f"{', ' + r['status'] if r['status'] != 'completed' else ''})")


def search_outcome(summary: dict[str, Any], plan: P.SearchPlan, evidence: dict[str, Any]) -> dict[str, Any]:
    best = summary["best"]
    trials = summary["trials"]
    curves = (f"after {evidence['epochs']:.1f} epochs the plain recipe fits {sig(evidence['train_acc'])} of its "
              f"training data and {sig(evidence['val_acc'])} of validation" if evidence else "")
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
        steps.append(f"{plan.dims[k - 1]}: " + (f"kept ({sig(won['value'])}; no option beat it by more than the noise, "
                                                 f"{sig(margin)})" if won["number"] == 0 else
                                                 f"{describe(won['params'])} ({sig(won['value'])} against "
                                                 f"{sig(rows[0]['value'] or 0)} unchanged)"))
    return {"winner": winner, "runner_up": runner["run_dir"] if runner else None, "trials": len(trials),
            "time": summary["time"], "overfitting": evidence, "outcome": "; ".join(steps)}
