"""`coach autopilot`: the whole recipe under a time budget, with the reason for every decision.

A careful practitioner following the lectures, in order (each stage gets a share of the
budget; a smaller budget gives a shorter, still complete, session):

  1. look at the data and pick a model family that fits its shape (MLP for vectors, 1-D
     convnet for signals, 2-D convnet for images), standardization and Kaiming init with
     batch norm;
  2. run the babysitter's checks; stop with an explanation when training cannot work
     (labels look random, the gradient is wrong); take the LR range test's suggestion;
  3-4. coarse-to-fine random search in log space around that LR (LR, weight decay, width,
     dropout, augmentation strength), short trials first, bad ones stopped early;
  5. read the best trial's curves: more regularization when it overfits, a wider model
     when it underfits;
  6. train the final model for the rest of the budget (cosine decay, EMA), then decide on
     the validation split whether EMA weights, an ensemble with the best search trials and
     TTA help;
  7. evaluate on the test split exactly once, export the model and write the report.

The session is a directory; `state.json` records each finished stage, so `--resume`
continues where it stopped (the search and the final training resume themselves).
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from coach.babysit import check, diagnose_run, problems
from coach.config import Config, make_config
from coach.data import Data, load_data
from coach.errors import UserError
from coach.evaluate import ensemble, predict_proba, recompute_bn, scores
from coach.report.run_report import STYLE, findings_html
from coach.search import search
from coach.train import Run, fit
from coach.train.callbacks import StepClock
from coach.train.run import rebuild_model, write_json

SHARES = {"check": 0.08, "search": 0.42, "final": 0.42, "evaluate": 0.08}
TRIAL_OVERHEAD = 0.5  # seconds a trial spends outside its epochs: run directory, model, checkpoints
KNOWN = ("fashion-mnist", "mnist", "mnist1d", "digits", "cifar10")


def data_section(data: str) -> dict[str, Any]:
    if data in KNOWN:
        return {"name": data}
    p = Path(data)
    if p.suffix == ".npz" and p.is_file():
        return {"name": "npz", "path": str(p)}
    if p.is_dir():
        return {"name": "image-folder", "path": str(p), "image_size": folder_image_size(p)}
    raise UserError(f"--data {data}: not a known dataset ({', '.join(KNOWN)}), an .npz file or a folder of images")


def folder_image_size(root: Path, default: int = 32, sample: int = 64) -> list[int]:
    """Small images keep their own size (upscaling only costs time); larger ones are resized
    to default x default, what a 2-core budget affords. The median of a sample decides."""
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


def starting_config(data_cfg: dict[str, Any], data: Data, seed: int = 0) -> tuple[Config, str]:
    """The lectures' defaults for this shape of data."""
    kind, shape = data.kind, data.input_shape
    if kind == "vector":
        model, why = {"name": "mlp", "width": 256, "depth": 2}, "flat vectors: an MLP"
    elif kind == "signal":
        model, why = {"name": "convnet", "width": 32, "depth": 2}, "1-D signals: a 1-D convnet"
    else:
        model, why = {"name": "convnet", "width": 32, "depth": 2}, \
            f"{shape[0]}x{shape[1]}x{shape[2]} images: a VGG-style 2-D convnet (small enough for the budget)"
    augment = {"crop_padding": 2} if kind == "image" else {"shift": 2} if kind == "signal" else {}
    cfg = make_config({"seed": seed, "data": {**data_cfg, "preprocess": "standardize"},
                       "model": {**model, "activation": "relu", "init": "kaiming", "norm": "batch"},
                       "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4},
                       "schedule": {"name": "cosine", "warmup": 0.03}, "augment": augment,
                       "train": {"epochs": 4, "batch_size": 128, "progress": False, "monitor_every": 0}})
    return cfg, (f"{why}; inputs standardized per channel (ResNet-style), Kaiming init with batch norm for ReLU, "
                 "AdamW with cosine decay")


class Session:
    """One autopilot session directory and its stage log."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget = out, budget
        self.state_path = out / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {
            "stages": {}, "elapsed": 0.0, "budget": budget}
        self.started = time.time() - self.state["elapsed"]

    def elapsed(self) -> float:
        return time.time() - self.started

    def left(self) -> float:
        return max(self.budget - self.elapsed(), 0.0)

    def done(self, stage: str) -> dict[str, Any] | None:
        return self.state["stages"].get(stage)

    def record(self, stage: str, info: dict[str, Any]) -> None:
        info["finished_at"] = self.elapsed()
        self.state["stages"][stage] = info
        self.state["elapsed"] = self.elapsed()
        write_json(self.state_path, self.state)
        print(f"[{self.elapsed():6.0f}s / {self.budget:.0f}s] {stage}: {info.get('decision', '')}", flush=True)


def autopilot(data: str, budget: float = 1200.0, out: str | Path | None = None, resume: str | Path | None = None,
              seed: int = 0) -> dict[str, Any]:
    if resume is not None:
        out = Path(resume)
        if not (out / "state.json").exists():
            raise UserError(f"--resume {out}: not an autopilot session (no state.json)")
        prev = json.loads((out / "state.json").read_text())
        budget, data = prev["budget"], prev["data"]
    out = Path(out) if out else Path("autopilot") / time.strftime(f"%Y%m%d-%H%M%S-{Path(str(data)).name}")
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, budget)
    s.state["data"] = data
    data_cfg = data_section(data)
    loaded = load_data(make_config({"data": data_cfg}).data)

    # 1. data and a starting point --------------------------------------------------------
    cfg, why = starting_config(data_cfg, loaded, seed)
    if not s.done("setup"):
        s.record("setup", {"decision": why, "data": {"kind": loaded.kind, "shape": list(loaded.input_shape),
                                                     "classes": loaded.num_classes, "train": len(loaded.train),
                                                     "val": len(loaded.val), "test": len(loaded.test)},
                           "config": cfg.to_dict()})

    # 2. the babysitter's checks ---------------------------------------------------------
    if not s.done("check"):
        result = check(cfg, loaded, **check_steps(s.budget * SHARES["check"], _step_seconds(s, loaded, cfg)))
        write_json(out / "check.json", result.to_dict())
        fatal = [f for f in result.findings if f.severity == "error" and f.code in
                 ("label_problem", "gradient_check_failed")]
        lr = result.steps.get("lr_range", {}).get("suggested_lr") or cfg.optim.lr
        lr = min(max(lr, 1e-4), 3e-2)  # Adam-family LRs outside this band are a sign of a noisy sweep
        info = {"findings": [f.to_dict() for f in result.findings], "suggested_lr": lr,
                "decision": (f"stopping: {fatal[0].message}. {fatal[0].advice}" if fatal else
                             f"checks passed ({len(problems(result.findings))} warnings); the LR range test "
                             f"suggests {lr:.2g}, the centre of the search range")}
        s.record("check", info)
        if fatal:
            return finish(s, None, loaded, stopped=info["decision"])
    lr = s.done("check")["suggested_lr"]

    # 3-4. coarse-to-fine search ----------------------------------------------------------
    space = {"optim.lr": f"loguniform({lr / 10:.3g}, {lr * 10:.3g})",
             "optim.weight_decay": "loguniform(1e-6, 1e-2)",
             "model.width": "choice([16, 32, 64])" if loaded.kind != "vector" else "choice([128, 256, 512])",
             "regularize.dropout": "uniform(0.0, 0.4)"}
    if loaded.kind == "image":
        space["augment.crop_padding"] = "choice([0, 2, 4])"
    if not s.done("search"):
        # its share, less what the checks overran (never under half of it): stages keep to a timetable
        search_budget = max(s.budget * (SHARES["check"] + SHARES["search"]) - s.elapsed(),
                            0.5 * s.budget * SHARES["search"])
        plan = plan_search(search_budget, _epoch_seconds(s, loaded, cfg), len(loaded.train))
        scfg = cfg.replace(**{"train.epochs": plan["epochs"] * 2, "data.limit": plan["limit"]})
        summary = search(scfg.model_copy(update={"search": space}), "coarse-to-fine", trials=plan["trials"],
                         stages=2, sweep_dir=out / "sweep", budget=search_budget, pruner="asha")
        best = summary["best"]
        subset = f" on a random {plan['limit']} of the {len(loaded.train)} training examples (for speed)" \
            if plan["limit"] else ""
        s.record("search", {"trials": len(summary["trials"]), "best": best, "space": space, "plan": plan,
                            "stages": summary["stages"], "decision":
                                f"{len(summary['trials'])} trials in 2 stages ({plan['epochs']} epochs, then "
                                f"{plan['epochs'] * 2}){subset}; best val acc {best['value']:.4f} with "
                                f"{best['params']}" if best else
                                "no trial finished; keeping the starting configuration"})
    sd = s.done("search")
    best_params = sd["best"]["params"] if sd["best"] else {}
    final_cfg = cfg.replace(**best_params)

    # 5. read the curves of the best trial ------------------------------------------------
    if not s.done("curves"):
        findings = []
        if sd["best"] and sd["best"].get("run_dir") and Path(sd["best"]["run_dir"]).exists():
            findings = diagnose_run(sd["best"]["run_dir"])
        over, reactions = react({f.code for f in findings}, final_cfg, loaded.kind)
        s.record("curves", {"findings": [f.to_dict() for f in findings], "overrides": over,
                            "decision": "; ".join(reactions) or "the best trial's curves look healthy: no change"})
    final_cfg = final_cfg.replace(**s.done("curves")["overrides"])

    # 6. the final model ------------------------------------------------------------------
    final_dir = out / "final"
    if not s.done("final"):
        epoch_cost = _epoch_seconds(s, loaded, final_cfg)  # may time a probe of a new width: before the clock
        time_left = s.left() - _evaluation_seconds(s, loaded, final_cfg)
        epochs = final_epochs(time_left, epoch_cost)
        steps = epochs * max(len(loaded.train) // final_cfg.train.batch_size, 1)
        final_cfg = final_cfg.replace(**{"train.epochs": epochs, "train.ema": ema_decay_for(steps),
                                         "train.time_budget": max(time_left, 10.0), "train.fit_to_budget": True,
                                         "train.monitor_every": 50})
        if (final_dir / "checkpoints" / "last.pt").exists() and not (final_dir / "summary.json").exists():
            run = fit(resume=final_dir)
        else:
            run = fit(final_cfg, run_dir=final_dir, data=loaded)
        s.record("final", {"epochs": epochs, "summary": run.summary,
                           "decision": f"trained {run.summary['epochs']:.1f} epochs (planned {epochs} from "
                                       f"{epoch_cost:.2g}s/epoch, the schedule fitted to the {time_left:.0f}s left) "
                                       f"with cosine decay and EMA; best val acc "
                                       f"{run.summary['best']['value']:.4f}"})

    # 6b. what helps, decided on the validation split -------------------------------------
    if not s.done("choose"):
        s.record("choose", choose(final_dir, sd, loaded))
    return finish(s, final_dir, loaded)


def plan_search(budget: float, epoch_seconds: float, n_train: int) -> dict[str, Any]:
    """How long the search trials train, on how much data, and how many there are.

    The lectures: many short trials first. Two stages (stage 2 trains twice as long) cost
    about 1.5 x trials x (stage-1 epochs + ~0.5 s of start-up); ASHA stops about a third of
    them early. Stage 1 trains 1-5 epochs, as long as 16 trials still fit; when not even 16
    one-epoch trials fit
    (big data on a small machine), the trials train on a random subset of the training
    split, never under 2,000 examples (validation stays whole, so trials compare fairly)."""
    fraction = min(1.0, budget / (16 * 1.5 * max(epoch_seconds, 1e-6)))
    limit = None if fraction >= 1.0 or n_train <= 2000 else max(2000, int(n_train * fraction))
    cost = epoch_seconds * (limit or n_train) / n_train
    epochs = int(min(5, max(1, budget / (16 * 1.5 * max(cost, 1e-6)))))
    trials = int(min(48, max(6, 1.3 * budget / (1.5 * (epochs * cost + TRIAL_OVERHEAD)))))
    return {"epochs": epochs, "trials": trials, "limit": limit}


def react(codes: set[str], cfg: Config, kind: str) -> tuple[dict[str, Any], list[str]]:
    """The lectures' reactions to the best trial's curves: overfitting -> more regularization
    (and random crops for images); underfitting -> a bigger model."""
    over: dict[str, Any] = {}
    reactions = []
    if "overfitting" in codes:
        over["regularize.dropout"] = round(min(cfg.regularize.dropout + 0.1, 0.6), 3)
        if kind == "image":
            over["augment.crop_padding"] = max(cfg.augment.crop_padding, 2)
        reactions.append("the best trial overfits: dropout +0.1" + (" and random crops" if kind == "image" else ""))
    if "underfitting" in codes:
        over["model.width"] = cfg.model.width * 2
        reactions.append("the best trial underfits: twice the width")
    return over, reactions


def final_epochs(seconds: float, epoch_seconds: float) -> int:
    """Epochs that fill the time left (the cosine schedule needs the count up front). Planned
    a little long on purpose: the run's fit_to_budget fits the schedule to the pace it
    measures, and never lengthens it beyond this plan."""
    return int(max(1, min(300, seconds / max(0.85 * epoch_seconds, 1e-3))))


def ema_decay_for(steps: int) -> float:
    """An averaging window of about the last 10% of training: a fixed 0.999 on a short run
    would mostly average the early, poor weights."""
    return min(0.9999, max(0.9, 1.0 - 1.0 / max(0.1 * steps, 10.0)))


def check_steps(budget: float, step_seconds: float) -> dict[str, int]:
    """Step counts for the babysitter's checks that fit their share of the budget: the LR
    range test (2 x probe_steps) and the five LR probes cost ~7 x probe_steps training steps,
    overfitting (3 x probe_steps at a fifth of the batch) ~1 more: ~8. On Fashion-MNIST the
    checks ran at ~1.8x the probe run's median step (gradient check, the probes' validation,
    fresh models), hence 14."""
    probe = int(min(100, max(10, budget / (14 * max(step_seconds, 1e-6)))))
    return {"probe_steps": probe, "range_steps": min(100, max(20, 2 * probe)),
            "overfit_steps": min(300, max(30, 3 * probe))}


def _step_seconds(s: Session, data: Data, cfg: Config) -> float:
    """Seconds per training step of this model: the median step of a 30-step probe run (the
    first steps are slow while memory is allocated), cached per width."""
    timed = s.state.get("step_seconds", {})
    if str(cfg.model.width) not in timed:
        epochs = -(-30 // max(len(data.train) // cfg.train.batch_size, 1))  # 30 steps even on tiny data
        clock = StepClock()
        fit(cfg.replace(**{"train.max_steps": 30, "train.epochs": epochs, "train.eval_every": 10**6}),
            run_dir=s.out / "probe", data=data, callbacks=[clock])
        timed[str(cfg.model.width)] = statistics.median(clock.gaps(skip=5))
        s.state["step_seconds"] = timed
    return timed[str(cfg.model.width)]


def _epoch_seconds(s: Session, data: Data, cfg: Config) -> float:
    """A training pass plus a validation pass (forward only: about a third of a step per batch)."""
    batches = max(len(data.train) // cfg.train.batch_size, 1) + len(data.val) / cfg.train.batch_size / 3
    return _step_seconds(s, data, cfg) * batches


def _evaluation_seconds(s: Session, data: Data, cfg: Config) -> float:
    """Time kept for stage 6b and the test: a few forward passes over train (batch-norm
    recompute for EMA), validation (each candidate) and test; never more than its share."""
    passes = (len(data.train) + 8 * len(data.val) + 3 * len(data.test)) / cfg.train.batch_size / 3
    return min(s.budget * SHARES["evaluate"], max(5.0, 2 * passes * _step_seconds(s, data, cfg)))


def choose(final_dir: Path, search_info: dict[str, Any], data: Data) -> dict[str, Any]:
    run = Run.open(final_dir)
    tta = "flip" if data.kind == "image" else "shift" if data.kind == "signal" else "none"
    candidates: dict[str, Any] = {}
    best = run.load_model("best")
    p_best = predict_proba(best, data.val.x)
    candidates["best weights"] = (scores(p_best, data.val.y)["acc"], {"weights": "best", "tta": "none"})
    ema_path = final_dir / "weights" / "ema.safetensors"
    p_ema = None
    if ema_path.exists():
        from safetensors.torch import load_file
        ema = recompute_bn(rebuild_model(run.config, run.spec, load_file(str(ema_path))), data.train.x)
        p_ema = predict_proba(ema, data.val.x)
        candidates["EMA weights"] = (scores(p_ema, data.val.y)["acc"], {"weights": "ema", "tta": "none"})
    base_key = max(candidates, key=lambda k: candidates[k][0])
    base = candidates[base_key][1]
    if tta != "none":
        model = best if base["weights"] == "best" else ema
        acc = scores(predict_proba(model, data.val.x, tta), data.val.y)["acc"]
        candidates[f"{base_key} + TTA {tta}"] = (acc, {**base, "tta": tta})
    members = [p_best if base["weights"] == "best" else p_ema]
    if search_info.get("best") and search_info["best"].get("run_dir"):
        try:
            members.append(predict_proba(Run.open(search_info["best"]["run_dir"]).load_model("best"), data.val.x))
            acc = scores(ensemble(members), data.val.y)["acc"]
            candidates[f"{base_key} + best search trial (ensemble)"] = (acc, {**base, "ensemble": [
                search_info["best"]["run_dir"]]})
        except UserError:
            pass
    pick = max(candidates, key=lambda k: candidates[k][0])
    table = {k: v[0] for k, v in candidates.items()}
    return {"candidates": table, "choice": candidates[pick][1],
            "decision": "on the validation split: " + ", ".join(f"{k} {v:.4f}" for k, v in table.items())
                        + f" -> {pick}"}


def final_model_probs(final_dir: Path, choice: dict[str, Any], data: Data) -> Any:
    run = Run.open(final_dir)
    if choice["weights"] == "ema":
        from safetensors.torch import load_file
        model = recompute_bn(rebuild_model(run.config, run.spec,
                                           load_file(str(final_dir / "weights" / "ema.safetensors"))), data.train.x)
    else:
        model = run.load_model("best")
    probs = [predict_proba(model, data.test.x, choice.get("tta", "none"))]
    for d in choice.get("ensemble", []):
        probs.append(predict_proba(Run.open(d).load_model("best"), data.test.x))
    return ensemble(probs)


def finish(s: Session, final_dir: Path | None, data: Data, stopped: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"out": str(s.out), "stopped": stopped}
    if final_dir is not None:
        if not s.done("test"):
            choice = s.done("choose")["choice"]
            test = scores(final_model_probs(final_dir, choice, data), data.test.y)  # the one look at the test set
            s.record("test", {"test_acc": test["acc"], "test_loss": test["loss"], "choice": choice,
                              "decision": f"test accuracy {test['acc']:.4f} (evaluated once)"})
        result.update(s.done("test"))
        result["model_dir"] = str(final_dir)
    result["time"] = s.elapsed()
    result["report"] = str(render_session(s))
    write_json(s.out / "result.json", result)
    return result


def render_session(s: Session) -> Path:
    import html

    from coach.report import render, render_run

    st = s.state["stages"]
    parts = [f"<h1>coach autopilot: {html.escape(str(s.state.get('data')))}</h1>"]
    if "test" in st:
        parts.append(f"<p class='sub'>test accuracy <b>{st['test']['test_acc']:.4f}</b> &middot; "
                     f"{s.elapsed():.0f}s of a {s.budget:.0f}s budget &middot; model "
                     f"{html.escape(str(st.get('final', {}).get('summary', {}).get('params', '')))} parameters, "
                     f"in <a href='final/report.html'>final/</a></p>")
    for name, title in (("setup", "1. Data and starting point"), ("check", "2. Babysitter checks"),
                        ("search", "3-4. Coarse-to-fine search"), ("curves", "5. Reading the curves"),
                        ("final", "6. Final training"), ("choose", "6b. What helps (validation split)"),
                        ("test", "7. Test set (once)")):
        if name not in st:
            continue
        parts.append(f"<h2>{title}</h2><p>{html.escape(st[name].get('decision', ''))}</p>")
        if name in ("check", "curves") and st[name].get("findings"):
            parts.append(findings_html(st[name]["findings"]))
        if name == "search" and (s.out / "sweep" / "sweep.json").exists():
            parts.append("<p><a href='sweep/report.html'>command center: every trial</a></p>")
            render(s.out / "sweep")
    if (s.out / "final" / "summary.json").exists():
        render_run(s.out / "final")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>coach autopilot</title><style>{STYLE}</style>"
            "</head><body>" + "\n".join(parts) + "</body></html>")
    path = s.out / "report.html"
    path.write_text(page)
    return path
