"""The autopilot's stages, each a small function of the `Pilot` (the session, the data, the
floor, how an epoch is priced) that records its decision, its reason and its seconds in the
session: setup, cost (the machine's speed, the model size, ensemble members), check, search
(decisions judged at the final length), curves, final, choose. `coach.pilot.pilot` runs them in
order; this module holds what they share (what is left for training, what the end keeps)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from coach.babysit import check, diagnose_run, problems
from coach.config import Config
from coach.data import Data
from coach.fmt import seconds as duration_text, sig
from coach.nn.maker import BUILDER, Maker
from coach.pilot import judge as J, plan as P
from coach.pilot import choose as CH
from coach.pilot.cost import Cost, choose_threads, ladder, measure_ladder, time_config
from coach.pilot.decide import planned_epochs, run_decisions
from coach.pilot.recipe import floor_lr
from coach.pilot.session import EpochLines, Session, SessionInterrupted
from coach.train import Run, fit
from coach.train.job import Job
from coach.train.loop import pick_device
from coach.train.run import write_json
from coach.train.speed import Stopwatch, plan_speed

CHECK_SHARE = 0.04  # of the budget, for the babysitter's checks
# decisions that can be forced off (bench/autopilot.py's table of what each buys): the measured
# precision/layout/batch, the floor's augmentation, a width other than the plain one, the decision
# runs, EMA in the final training, test-time views
WITHOUT = ("speed", "augmentation", "width", "decisions", "ema", "tta")
BATCH_WATCH = Stopwatch(10, min_seconds=0.5, mean=True)  # how each batch size is timed: the throughput over
# half a second at least, as the thread count is (4 steps' median put batch 256 at 0.79-1.14x of batch 128
# from one seed to the next, where the real runs trained an epoch 8% faster at 256)
BATCH_GAIN = 1.1  # the doubled batch must train this much more examples a second: half the updates an epoch
COST_SHARE = 0.03  # at most, for timing the model sizes
FINISH_SHARE = 0.12  # at most, for choosing on validation and the test (the pages come on top)
UNFORESEEN = 0.005  # of the budget, kept at the end for what the prices do not foresee (loading weights, saving)
FINAL_HORIZON_SLACK = 2  # the final's epochs cap: this many times what the cost model expects it to get
REPORT_SECONDS = 3.5  # the pages (matplotlib's import, the session's, the final run's and the sweep's plots) until
# the cost stage has priced them on this machine (coach.pilot.page.price_pages): 1-3 s measured here


@dataclass
class Pilot:
    """What every stage reads: the session, the data, the floor and how an epoch is priced."""
    s: Session
    data: Data
    floor: Config
    why: str  # the floor's reasons
    sizing: P.Sizing
    epochs: tuple[int, int, str]  # the final training's target and minimum epochs, and why
    maker: Maker = BUILDER
    without: frozenset[str] = frozenset()  # decisions forced off (WITHOUT)

    def job(self, cfg: Config) -> Job:
        """cfg on the session's data, its model made by the session's maker."""
        return Job(cfg, self.data, self.maker, held=True)

    def needs(self) -> tuple[int, int]:
        """The final training's target and minimum epochs, as the cost stage recorded them (for
        the floor it chose to train: P.choose_floor may leave the augmentation out)."""
        c = self.s.done("cost")
        return (c["epochs"][0], c["epochs"][1]) if c else self.epochs[:2]

    def priced(self, batch: int | None = None) -> P.Sizing:
        """How an epoch is priced at `batch`, by default the batch size the cost stage chose: a
        doubled batch halves the steps an epoch (priced at the floor's steps, a session that
        doubled its batch planned 11.4 epochs of width 32 and trained 18)."""
        batch = batch or (self.s.done("cost") or {}).get("settings", {}).get("train.batch_size",
                                                                              self.floor.train.batch_size)
        return P.Sizing(P.steps_per_epoch(len(self.data.train), batch), self.sizing.n_val, self.sizing.ema)

    @property
    def views(self) -> bool:
        """Whether test-time views will be tried (not when forced off)."""
        return "tta" not in self.without

    def finish(self, cfg: Config, ema: bool | None = None, others: int = 1) -> float:
        """finish_seconds for the priced model trained as cfg: the views are priced only where
        they will be tried (a session with "tta" forced off reserved them, and ended 33 s early),
        the EMA weights only where the final training may keep them (ema: whether it will)."""
        ema = "ema" not in self.without if ema is None else ema
        return finish_seconds(self.s, self.cost(), self.data, cfg, ema, others, views=self.views)

    def cost(self) -> Cost:
        c = self.s.done("cost")
        return Cost(**next(x for x in c["costs"] if x["width"] == c["width"]))

    def base(self) -> Config:
        """The floor at the measured speed and the chosen size, at the LR the checks kept."""
        c, check_ = self.s.done("cost"), self.s.done("check")
        cfg = self.floor.replace(**c["settings"], **c.get("floor", {}), **{"model.width": c["width"]})
        return cfg.replace(**{"optim.lr": check_["lr"]}) if check_ else cfg


def setup_stage(p: Pilot) -> None:
    d = p.data
    p.s.record("setup", {"decision": p.why, "data": {"kind": d.kind, "shape": list(d.input_shape),
                                                     "classes": d.num_classes, "train": len(d.train),
                                                     "val": len(d.val), "test": len(d.test)},
                         "config": p.floor.to_dict()})


def cost_stage(p: Pilot) -> None:
    """The machine's speed for the floor (precision, layout, batch size), the fastest thread
    count now, then the model sizes: the widest that gets the epochs it needs in all the time
    for training (a budget past what one width needs buys a wider one, not epochs it cannot use)."""
    s, data = p.s, p.data
    fast, speed_why = machine_settings(p.job(p.floor), s.left()) if "speed" not in p.without else (
        {"train.precision": "fp32", "train.channels_last": False}, "fp32, NCHW, batch 128 (speed forced off)")
    floor = p.job(p.floor.replace(**fast))
    threads, timed, known = choose_threads(floor)
    started = time.perf_counter()
    from coach.pilot.page import price_pages  # matplotlib's import is part of the pages' price

    pages = price_pages(started)
    training = training_seconds(s, reserve=finish_seconds(s, None, data)) - CHECK_SHARE * s.budget
    target, minimum, _ = p.epochs
    plain_w = floor.cfg.model.width
    sizing = p.priced(floor.cfg.train.batch_size)
    plain = known or time_config(floor)
    augmented = floor.cfg.augment != Config().augment
    batch = p.floor.train.batch_size  # the epochs needed are the floor's, whatever batch the speed chose
    if augmented and not P.keeps_augmentation(len(data.train), batch, sizing.epoch(plain), training):
        target, minimum, _ = P.epochs_needed(len(data.train), batch)  # measure as far as it could go without
    costs = measure_ladder(floor, lambda c: (target if c.width >= plain_w else minimum) * sizing.epoch(c)
                           <= training, COST_SHARE * s.budget, known=plain,
                           up=minimum * sizing.epoch(plain) <= training,
                           # your own module has one size, unless its factory takes a width
                           widths=None if p.maker.can_widen and "width" not in p.without else (plain_w,))
    pick, size_why, (target, minimum, epochs_why), bare = P.choose_floor(
        costs, training, sizing, len(data.train), batch, plain_w, augmented)
    dropped = P.without_augmentation(data.kind, data.input_shape) if bare else {}
    k, members_why = P.members(training, target * sizing.epoch(pick), P.MAX_FINAL_EPOCHS * sizing.epoch(pick))
    s.record("cost", {"costs": [c.to_dict() for c in costs], "width": pick.width, "epochs": [target, minimum],
                      "members": k, "planned": COST_SHARE * s.budget, "settings": fast, "speed": speed_why,
                      "floor": dropped,
                      "threads": threads, "thread_steps": timed, "pages": pages,
                      "decision": speed_why + "; " + threads_why(threads, timed) + f"timed {len(costs)} sizes ("
                                  + ", ".join(f"width {c.width}: {sizing.epoch(c):.3g}s/epoch" for c in costs)
                                  + f"); the final training needs {epochs_why}; chosen for the {training:.0f}s "
                                    f"for training: {size_why}; {members_why}; the pages priced at "
                                    f"{pages:.1f}s (a plot timed)"})


def machine_settings(floor: Job, budget: float, measure: Callable[[Job], Cost] | None = None
                     ) -> tuple[dict[str, Any], str]:
    """Precision and memory layout timed on the floor's model (coach.train.speed), then the
    batch size: twice the floor's when that trains over 10% more examples a second (a GPU; a
    2-core CPU measured it slower), its LR scaled by sqrt(2) (the square-root rule for Adam,
    Malladi et al. 2022). `measure` prices a job (by default `time_config` on BATCH_WATCH)."""
    data = floor.data
    assert data is not None
    measure = measure or (lambda j: time_config(j, BATCH_WATCH))
    speed = plan_speed(floor.cfg, floor.build(), data, pick_device(floor.cfg.train.device), budget=budget)
    settings: dict[str, Any] = {"train.precision": speed.precision, "train.channels_last": speed.channels_last}
    why = f"precision and layout: {speed.why}"
    cfg = floor.cfg.replace(**settings)
    bs = cfg.train.batch_size
    if len(data.train) >= 16 * bs and budget >= 60:  # enough steps an epoch either way, time to look
        one, two = (measure(floor.with_config(cfg.replace(**{"train.batch_size": b}))) for b in (bs, 2 * bs))
        rate = (2 * bs / two.step) / (bs / one.step)
        if rate > BATCH_GAIN:
            settings.update({"train.batch_size": 2 * bs, "optim.lr": cfg.optim.lr * math.sqrt(2)})
        why += (f"; batch {2 * bs if rate > BATCH_GAIN else bs}: batch {2 * bs} trains {rate:.2f}x the examples "
                f"a second of batch {bs}")
    return settings, why


def check_stage(p: Pilot) -> str | None:
    s, base, maker = p.s, p.base(), p.maker
    share = CHECK_SHARE * s.budget
    checked = check_cost(p.job(base), p.cost(), [Cost(**c) for c in s.done("cost")["costs"]], share,
                         pick_device(base.train.device).type)
    # without step 5's control models: their cost is not bounded by the share, and the autopilot
    # acts only on the fatal findings (labels, gradients) and the LR probe
    result = check(base.replace(**{"model.width": checked.width}), p.data, **P.check_steps(share, checked.step),
                   controls=False, model=maker)
    write_json(s.out / "check.json", result.to_dict())
    fatal = [f for f in result.findings if f.severity == "error" and f.code in
             ("label_problem", "gradient_check_failed")]
    lr, lr_why = floor_lr(result.steps.get("lr_probe", []), base.optim.lr)
    info = {"findings": [f.to_dict() for f in result.findings], "checked_width": checked.width, "planned": share,
            "suggested_lr": result.steps.get("lr_range", {}).get("suggested_lr"), "lr": lr,
            "decision": (f"stopping: {fatal[0].message}. {fatal[0].advice}" if fatal else
                         f"checks passed on width {checked.width} ({len(problems(result.findings))} warnings); "
                         + lr_why)}
    s.record("check", info)
    return info["decision"] if fatal else None


def decide_stage(p: Pilot) -> None:
    """The decisions the time the final training does not need can judge at a length that counts."""
    s, data, cost, base = p.s, p.data, p.cost(), p.base()
    epoch_s = p.priced().epoch(cost)
    seconds = training_seconds(s, p.finish(base))
    k = s.done("cost").get("members", 1)
    needed = k * min(p.needs()[0], P.MAX_FINAL_EPOCHS) * epoch_s
    costs = [Cost(**c) for c in s.done("cost")["costs"]]
    wider = next((c for c in sorted(costs, key=lambda c: c.width) if c.width > cost.width
                  and p.needs()[1] * p.priced().epoch(c) <= seconds and c.params <= P.PARAMS_PER_EXAMPLE * len(data.train)),
                 None)
    options = J.options_for(data.kind, data.input_shape, base.optim.weight_decay,
                            wider.width if wider is not None else None, mirrors=min(data.input_shape[1:], default=0) >= 8)
    options = [o for o in options if base.replace(**o.overrides) != base]  # "no augmentation" on a floor without it
    plan = J.plan_decisions(len(options), seconds, needed, cost.step, k * P.MAX_FINAL_EPOCHS * epoch_s, k) \
        if "decisions" not in p.without else J.no_decisions(seconds, "forced off")
    info: dict[str, Any] = {"plan": plan.to_dict(), "options": [o.name for o in options], "overrides": {},
                            "planned": plan.seconds, "decision": plan.why}
    if plan.arms > 1:
        # the runs may overrun their plan a little (start-up, evaluation); never into what the final needs
        deadline = s.deadline() - needed - p.finish(base)
        info.update(run_decisions(s, plan, options, base, data, epoch_s, deadline, p.maker))
        adopted = info["judgement"]["adopted"] if "judgement" in info else []
        info["decision"] = (plan.why + ". " + info["outcome"] + ". "
                            + (f"Adopted: {', '.join(adopted)}" if adopted else "The floor stands"))
    s.record("search", info)


def curves_stage(p: Pilot) -> None:
    """The floor's longest complete run, read as the lectures read curves."""
    runs = [r for r in json.loads((p.s.out / "sweep" / "decisions.json").read_text())["runs"].values()
            if r["arm"] == "floor"] if (p.s.out / "sweep" / "decisions.json").exists() else []
    longest = max(runs, key=lambda r: r["length"]) if runs else None
    findings = diagnose_run(longest["run_dir"]) if longest else []
    p.s.record("curves", {"findings": [f.to_dict() for f in findings],
                          "decision": "the floor's longest decision run: " + (
                              "; ".join(f.message for f in findings) if findings else "healthy") if longest
                          else "no decision runs to read"})


def final_stage(p: Pilot) -> None:
    """The adopted configuration from scratch for the time left; when the time holds more than
    one model of the chosen width (P.members: the width could grow no more), more members with
    other seeds, for an ensemble."""
    s, cost = p.s, p.cost()
    sd = s.done("search")
    final_cfg = p.base().replace(**sd["overrides"])
    epoch = p.priced().epoch(cost)
    left = s.left() - p.finish(final_cfg)
    k = min(s.done("cost").get("members", 1),
            P.members(training_seconds(s, p.finish(final_cfg)), p.needs()[0] * epoch,
                      P.MAX_FINAL_EPOCHS * epoch)[0])
    short = (f"only {duration_text(max(left, 0))} were left for the final training (under one epoch, "
             f"{duration_text(epoch)}): it trained for what was left, never under 1 s; " if left < epoch else "")
    others = k - 1 + bool(sd.get("runner_up"))
    dirs = [s.out / "final"] + [s.out / f"final-{i + 1}" for i in range(1, k)]
    for i, run_dir in enumerate(dirs):
        run = train_final(p, final_cfg.replace(seed=final_cfg.seed + i), run_dir, others, share=1 / (k - i))
        if run.summary["status"] == "interrupted":
            raise SessionInterrupted("final training")
    sm = Run.open(dirs[0]).summary
    ema = Run.open(dirs[0]).config.train.ema
    changed = ", ".join(sd["judgement"]["adopted"]) if sd.get("judgement") else ""
    s.record("final", {"summary": sm, "planned": Run.open(dirs[0]).config.train.time_budget,
                       "members": [str(d) for d in dirs], "decision":
                       f"{short}trained the floor{' with ' + changed if changed else ''} from scratch for "
                       f"{sm['epochs']:.1f} epochs in {sm['time']:.0f}s, the one-cycle schedule fitted to the time "
                       "left, " + (f"EMA of the weights (decay {ema:.4g}, a window of ~10% of the run)" if ema else
                                   f"no EMA (under {P.TARGET_EPOCHS} epochs)")
                       + f"; best val acc {sig(sm['best']['value'])}"
                       + (f"; {k} models with other seeds, each with the epochs it needs, for an ensemble"
                          if k > 1 else "")})


def choose_stage(p: Pilot) -> None:
    s, data, cost = p.s, p.data, p.cost()
    sd = s.done("search")
    final_cfg = p.base().replace(**sd["overrides"])
    runner_up, dirs = sd.get("runner_up"), [Path(d) for d in s.done("final").get("members", [])][1:]
    others = ([(f"the final's {len(dirs)} other member{'s' * (len(dirs) > 1)}", dirs)] if dirs else []) + \
        ([("the decisions' runner-up", [Path(runner_up)])] if runner_up else [])
    # the test's passes are the shortlist's to keep; the allowance for the unforeseen is not its to spend
    seconds = max(s.left() - page_seconds(s) - UNFORESEEN * s.budget, 0.0)
    info = CH.choose(s.out / "final", data, cost.predict, seconds, others, s.out / "val-predictions.npz",
                     p.maker.net(final_cfg, data.input_shape, data.num_classes) if p.maker else None,
                     views=p.views)
    judgement = sd.get("judgement")
    if judgement:  # the generalization gap the decisions projected, beside the one the final model has
        info["gap"] = {"predicted": judgement["gap"], "predicted_se": judgement["gap_se"], "realized": info["gap"]}
        info["decision"] += (f"; train-validation gap of the chosen model {sig(info['gap']['realized'])}, "
                             f"projected from the floor's decision runs {sig(judgement['gap'])} "
                             f"(+-{sig(judgement['gap_se'])})")
    s.record("choose", {**info, "planned": seconds})


def check_cost(job: Job, cost: Cost, timed: list[Cost], share: float, device: str,
               measure: Callable[..., Cost] = time_config) -> Cost:
    """The model the checks run on and what its training step costs where they run. The checks
    take the chosen width when their shortest version fits their share, else the cheapest size
    (they check the data and the setup, which do not depend on width). coach check trains its
    small models on the CPU in fp32 NCHW whatever the training device and precision, so unless the
    job trains just so, the sizes are timed that way: priced by the GPU's step, a 60 s session's
    checks planned 2 s and ran over 90 s; priced by the bf16 step, a 10-minute session's ran 38 s
    of their 24."""
    fits = lambda c: P.CHECK_STEP_FACTOR * P.MIN_PROBE_STEPS * c.step <= share  # noqa: E731
    assert job.data is not None
    smallest = min(ladder(job.data.kind)) if job.maker.can_widen else cost.width  # your module has one size
    at = lambda cfg, width: measure(job.with_config(cfg.replace(**{"model.width": width})), Stopwatch(4))  # noqa: E731
    train = job.cfg.train
    if device == "cpu" and train.precision == "fp32" and not train.channels_last:
        return cost if fits(cost) else min(timed + [at(job.cfg, smallest)], key=lambda c: c.step)
    checked = job.cfg.replace(**{"train.device": "cpu", "train.precision": "fp32", "train.channels_last": False})
    chosen = at(checked, cost.width)
    return chosen if fits(chosen) else min([chosen, at(checked, smallest)], key=lambda c: c.step)


def threads_why(threads: int, timed: dict[int, float]) -> str:
    if len(timed) < 2:
        return ""
    steps = ", ".join(f"{k} thread{'s' * (k > 1)} {v * 1000:.0f} ms" for k, v in timed.items())
    return f"{threads} CPU thread{'s' * (threads > 1)} (a step of the plain recipe took {steps}); "


def training_seconds(s: Session, reserve: float) -> float:
    """What is left for training: the budget less what has been used and what the end needs."""
    return max(s.left() - reserve, 1.0)


def finish_seconds(s: Session, cost: Cost | None, data: Data, cfg: Config | None = None, ema: bool = True,
                   others: int = 1, views: bool = True) -> float:
    """Seconds kept for choosing on validation, the test and the report: half a percent of the
    budget for the unforeseen, the pages, and (once the model is priced) the forward passes of
    the candidates `choose` will try in at most FINISH_SHARE of the budget (CH.planned_seconds)."""
    passes = 0.0
    if cost is not None and cfg is not None:
        passes = CH.planned_seconds(cfg, data, cost.predict, (FINISH_SHARE - UNFORESEEN) * s.budget, ema, others,
                                    views)
    pages = page_seconds(s)
    return min(UNFORESEEN * s.budget + pages + passes, FINISH_SHARE * s.budget + pages)


def page_seconds(s: Session) -> float:
    """The pages' price: as the cost stage measured it on this machine, else the allowance."""
    return (s.done("cost") or {}).get("pages", REPORT_SECONDS)


def train_final(p: Pilot, cfg: Config, final_dir: Path, others: int, share: float = 1.0) -> Run:
    """The adopted configuration from scratch for `share` of the time left, its one-cycle
    schedule fitted to it (budgeted training: it ends decayed where its time does). others:
    the ensemble members choose may add (their predictions are priced into the reserve)."""
    s, data, cost, sizing = p.s, p.data, p.cost(), p.priced()
    done = (final_dir / "summary.json").exists() and Run.open(final_dir).summary.get("status")
    if done and done != "interrupted":  # a member finished before the session was interrupted
        return Run.open(final_dir)
    if (final_dir / "checkpoints" / "last.pt").exists():
        return fit(resume=final_dir, data=data, callbacks=[EpochLines(s)], model=p.maker)
    # Polyak averaging pays on long runs; on a few epochs its window would hold the early, poor
    # weights, and validating it would double the validation time
    long = "ema" not in p.without and share * training_seconds(s, p.finish(cfg)) \
        >= P.TARGET_EPOCHS * sizing.epoch(cost)
    seconds = share * training_seconds(s, p.finish(cfg, ema=long, others=others))
    expected = min(P.MAX_FINAL_EPOCHS, planned_epochs(seconds, sizing.epoch(cost)))
    ema = P.ema_decay_for(expected * sizing.steps_per_epoch) if long else None
    # the horizon is the time: fit_to_budget fits the schedule to the pace the run measures, but
    # never past its epochs, so they are a cap well above the cost model's estimate (a width whose
    # epoch was timed at 41.7 s ran at 25.7 s, and a 15-minute session ended 3.4 minutes early)
    cfg = cfg.replace(**{"train.epochs": min(P.MAX_FINAL_EPOCHS, FINAL_HORIZON_SLACK * expected), "train.ema": ema,
                         # the run keeps its closing validation's time itself; 1% for saving and exporting
                         "train.time_budget": 0.99 * seconds,
                         "train.fit_to_budget": True, "train.monitor_every": 50,
                         "train.eval_every": sizing.eval_every(cost)})
    return fit(cfg, run_dir=final_dir, data=data, model=p.maker, callbacks=[EpochLines(s)])


