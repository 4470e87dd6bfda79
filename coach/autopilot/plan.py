"""The autopilot's planners: pure functions of measured seconds and the data's size.

Nothing here times or trains anything, so every rule is tested with plain numbers. The
rules, in the order the autopilot applies them:

1. the final training needs enough epochs to converge (`epochs_needed`): the lectures'
   "refine, train 10-20 epochs", and enough updates on small data, where an epoch is few;
2. the model is the widest of the plain recipe's family that gets those epochs in the time
   left after a search share (`choose_width`): a faster machine measures cheaper steps and
   gets a wider model;
3. the search decides only what it can (`plan_search`): three finished trials per searched
   dimension (the command center's own rule), in successive halving whose losers may use
   at most a share of the time; dimensions are dropped from the end of a priority list
   (`SPACE`) until that holds, and the dropped ones stay at the plain recipe's value;
4. the floor: the plain recipe is arm 0 and wins ties within the validation noise
   (`noise_margin`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from coach.autopilot.cost import Cost
from coach.search.halving import ARMS_PER_RUNG, losers_seconds

TARGET_EPOCHS = 10  # the lectures' babysitting step 5: "refine, train 10-20 epochs"
MIN_EPOCHS = 2  # a wider model's 2-3 epochs matched or beat a narrower one's 4-10 (Fashion-MNIST, measured)
MIN_UPDATES = 2000  # on small data an epoch is a few steps; SGD still needs its updates
MAX_NEEDED_EPOCHS = 60
MAX_FINAL_EPOCHS = 300  # past this, extra time goes to the search instead
TRIAL_EPOCHS = 1  # the lectures' first pass: "only a few epochs" (1-5)
MIN_TRIAL_STEPS = 150  # a trial re-warms its LR (30% of its steps) and anneals it: fewer mostly measure the re-warm
SEARCH_SHARE = 0.25  # at most this share of the training time goes to arms that lose
TRUNK_SHARE = 0.25  # the plain recipe trains this share of the time before the first rung branches from it
EVAL_SHARE = 0.05  # validation may take this share of a run's time: on big validation splits it runs less often
PARAMS_PER_EXAMPLE = 200  # the widest model considered has at most this many parameters per training example

# Searched dimensions per kind of data, in the order they are searched (one rung each) and
# dropped from the end when the budget cannot decide them. A search runs only when the
# budget is not compute-bound and the plain recipe's own curves show overfitting: what it
# decides is regularization. First "augmentation", one dimension over the data kind's
# label-preserving transforms (`augmentations`): whether they help is a property of the data
# and of how long the model trains (on Fashion-MNIST a 75k-parameter convnet lost 0.6 points
# to crops and flips over 12 epochs; on small sets they are most of the result), so
# validation decides; mirrors are a separate value because some data must not be mirrored
# (digits). Then label smoothing and weight decay. The learning rate is not a rung: a trial
# that continues from trained weights favours whatever disturbs them least (a tiny LR won
# such a rung on MNIST-1D), so the LR is decided where it can be, from scratch, by the
# babysitter's range test (1e-7..10, both failure ends) and the lectures' probes (1e-1..1e-4).
# Dropout is not searched: it changes the model's layers, so a trial could not continue
# from the incumbent's weights.
PRIORITY = {
    "image": ["augmentation", "regularize.label_smoothing", "optim.weight_decay"],
    "signal": ["augmentation", "regularize.label_smoothing", "optim.weight_decay"],
    "vector": ["optim.weight_decay", "regularize.label_smoothing"],
}


def augmentations(kind: str, shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """The label-preserving transforms worth trying, by kind of data: small translations for
    images (2 px on 28x28) and those plus mirrors; circular shifts for signals (length / 20)."""
    if kind == "image":
        pad = max(1, round(min(shape[1:]) / 14))
        return {"none": {}, "crops": {"augment.crop_padding": pad},
                "crops+flips": {"augment.crop_padding": pad, "augment.hflip": True}}
    if kind == "signal":
        return {"none": {}, "shifts": {"augment.shift": max(1, shape[-1] // 20)}}
    return {"none": {}}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(n_train // max(min(batch_size, n_train), 1), 1)


def epochs_needed(n_train: int, batch_size: int) -> tuple[int, int, str]:
    """(target, minimum, why): the final training aims at `target` epochs (the lectures'
    10-20, more on small data where an epoch is few updates) and a model is never so wide
    that it gets under `minimum`."""
    spe = steps_per_epoch(n_train, batch_size)
    extra = math.ceil(MIN_UPDATES / spe)
    target = min(MAX_NEEDED_EPOCHS, max(TARGET_EPOCHS, extra))
    minimum = min(target, max(MIN_EPOCHS, math.ceil(extra / 4)))
    why = (f"{target} epochs (the lectures' 10-20 for the final training)" if target == TARGET_EPOCHS else
           f"{target} epochs: {n_train} training examples make {spe} steps an epoch, and the final training needs "
           f"about {MIN_UPDATES} updates" + (f" (capped at {MAX_NEEDED_EPOCHS} epochs)" if target == MAX_NEEDED_EPOCHS
                                            else ""))
    return target, minimum, why + f", at least {minimum}"


@dataclass(frozen=True)
class Sizing:
    """How a width's epoch is priced: its steps, and validation (twice when the EMA weights are
    validated too) as often as EVAL_SHARE of the training time allows, at most once an epoch."""
    steps_per_epoch: int
    n_val: int
    ema: bool = True

    def val_seconds(self, c: Cost) -> float:
        return self.n_val * c.eval_example * (2 if self.ema else 1)

    def evals_per_epoch(self, c: Cost) -> float:
        return min(1.0, EVAL_SHARE * self.steps_per_epoch * c.step / max(self.val_seconds(c), 1e-12))

    def eval_every(self, c: Cost) -> int:
        """Steps between validations."""
        return max(1, math.ceil(self.steps_per_epoch / self.evals_per_epoch(c)))

    def epoch(self, c: Cost) -> float:
        return self.steps_per_epoch * c.step + self.evals_per_epoch(c) * self.val_seconds(c)


def choose_width(costs: list[Cost], seconds: float, target: int, minimum: int, sizing: Sizing, n_train: int,
                 plain_width: int) -> tuple[Cost, str]:
    """The widest measured size whose final training gets `target` epochs in `seconds`; when
    that is narrower than the plain recipe's width, the widest up to the plain width that still
    gets `minimum` epochs (a wide model's few epochs beat a narrow one's many); the smallest
    when none does. Never more than PARAMS_PER_EXAMPLE parameters per training example."""
    if not costs:
        raise ValueError("choose_width: no measured sizes")
    cap = PARAMS_PER_EXAMPLE * n_train
    ok = [c for c in costs if c.params <= cap] or [min(costs, key=lambda c: c.width)]
    full = [c for c in ok if target * sizing.epoch(c) <= seconds]
    short = [c for c in ok if minimum * sizing.epoch(c) <= seconds and c.width <= plain_width]
    if full and max(c.width for c in full) >= plain_width:
        pick, epochs = max(full, key=lambda c: c.width), target
    elif short:
        pick, epochs = max(short, key=lambda c: c.width), minimum
    else:
        pick, epochs = min(ok, key=lambda c: c.width), minimum
    e = sizing.epoch(pick)
    why = (f"width {pick.width} ({pick.params:,} parameters): {e:.3g}s an epoch here, {seconds / e:.1f} epochs in the "
           f"{seconds:.0f}s planned for the final training")
    if epochs * e > seconds:
        why += f"; no measured size affords {minimum} epochs: the smallest"
    bigger = [c for c in costs if c.width > pick.width]
    if bigger:
        b = min(bigger, key=lambda c: c.width)
        why += (f"; width {b.width} would get {seconds / sizing.epoch(b):.1f}" if b.params <= cap else
                f"; width {b.width} has more than {PARAMS_PER_EXAMPLE} parameters per training example")
    if pick.width != plain_width:
        why += f" (the plain recipe's width is {plain_width})"
    return pick, why


def space_for(kind: str, shape: tuple[int, ...]) -> dict[str, str]:
    """Ranges of every dimension the plan may search."""
    return {"augmentation": f"choice([{', '.join(augmentations(kind, shape))}])",
            "optim.weight_decay": "loguniform(1e-05, 0.1)",
            "regularize.label_smoothing": "uniform(0.0, 0.2)"}


@dataclass
class SearchPlan:
    dims: list[str]  # searched, in priority order: one rung each
    dropped: list[str]  # fixed at the plain recipe's value because the budget cannot decide them
    arms: int  # trials in the rungs: ARMS_PER_RUNG per dimension
    trunk: float  # seconds the plain recipe trains before the rungs branch from it
    rungs: list[float]  # seconds each arm of rung k trains
    losers: float  # seconds spent on arms that do not win
    seconds: float  # all the search's training, the trunk and the winners' included
    trial_seconds: float
    why: str
    space: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_bound(seconds: float, epoch_seconds: float) -> bool:
    """The Tuning Playbook's question, answered with the lectures' numbers: while the plain
    recipe gets fewer than the lectures' 10 epochs, more training is what helps most and
    every second goes to it (on Fashion-MNIST at 10 minutes neither a wider model, nor label
    smoothing, nor crops and flips beat the plain width's 10 epochs). Past that, the plain
    recipe trains first and its curves say whether regularization is worth searching."""
    return seconds < TARGET_EPOCHS * epoch_seconds


def plan_search(kind: str, shape: tuple[int, ...], seconds: float, epoch_seconds: float, step_seconds: float,
                epochs: int) -> SearchPlan:
    """Which dimensions the budget can decide, when, with trials of how long.

    The plain recipe trains first (the trunk, TRUNK_SHARE of `seconds`): the lectures' loop
    (train, read the curves, change one thing, go on), and a later horizon for every
    comparison, since a short trial from scratch favours whatever learns fastest, not what
    ends best (regularization pays off late; higher learning rates look better early). Then
    each searched dimension is one rung of ARMS_PER_RUNG trials (3 per dimension: the command
    center's own rule), all continuing from the incumbent's weights; the best continues into
    the next rung, and the last best into the final training. What the search costs is only
    the losers' seconds: at most `share` of `seconds` (SEARCH_SHARE, more when the final
    training would pass MAX_FINAL_EPOCHS anyway), and the winner must still get `epochs`
    epochs. D is the largest for which trials of the shortest useful length (TRIAL_EPOCHS
    epochs, at least MIN_TRIAL_STEPS steps) fit; then they are stretched to use the share."""
    priority = PRIORITY.get(kind, PRIORITY["vector"])
    shortest = max(TRIAL_EPOCHS * epoch_seconds, MIN_TRIAL_STEPS * step_seconds)
    share = max(SEARCH_SHARE, 1.0 - MAX_FINAL_EPOCHS * epoch_seconds / max(seconds, 1e-9))
    per_rung = ARMS_PER_RUNG - 1  # losers' seconds per second of a rung
    for d in range(len(priority), 0, -1):
        need = d * per_rung * shortest
        if need > share * seconds or seconds - need < epochs * epoch_seconds:
            continue
        r = max(shortest, min(share * seconds, seconds - epochs * epoch_seconds) / (d * per_rung))
        rungs = [r] * d
        losers = losers_seconds(rungs)
        # the trunk, leaving the final at least one rung's length after the rungs
        trunk = max(0.0, min(TRUNK_SHARE * seconds, seconds - ARMS_PER_RUNG * sum(rungs) - r))
        dims = priority[:d]
        space = {k: v for k, v in space_for(kind, shape).items() if k in dims}
        why = (f"the plain recipe trains {trunk:.0f}s ({trunk / epoch_seconds:.1f} epochs), then {ARMS_PER_RUNG} trials "
               f"of {r:.0f}s ({r / epoch_seconds:.1f} epochs) for each of {', '.join(dims)} in turn, every trial "
               f"continuing from the best so far; the arms that lose cost {losers:.0f}s "
               f"({losers / max(seconds, 1e-9):.0%} of the {seconds:.0f}s for training)")
        if priority[d:]:
            why += f"; {', '.join(priority[d:])} stay at the plain recipe's values (not enough budget to decide them)"
        return SearchPlan(dims, priority[d:], ARMS_PER_RUNG * d, trunk, rungs, losers,
                          trunk + ARMS_PER_RUNG * sum(rungs), r, why, space)
    return no_search(kind, f"{ARMS_PER_RUNG} trials of {shortest:.0f}s would leave the final training under "
                           f"{epochs} epochs or cost over {share:.0%} of the time", shortest)


def no_search(kind: str, reason: str, trial_seconds: float = 0.0) -> SearchPlan:
    priority = PRIORITY.get(kind, PRIORITY["vector"])
    why = (f"no search: {reason}; the budget buys training, not choices (every dimension stays at the plain "
           "recipe's value)")
    return SearchPlan([], priority, 0, 0.0, [], 0.0, 0.0, trial_seconds, why, {})


def noise_margin(value: float, n_val: int) -> float:
    """One standard error of a validation accuracy near `value` on n_val examples: an arm must
    beat the floor by more than this to replace it."""
    p = min(max(value, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(n_val, 1))


def ema_decay_for(steps: int) -> float:
    """An averaging window of about the last 10% of training: a fixed 0.999 on a short run
    would mostly average the early, poor weights."""
    return min(0.9999, max(0.9, 1.0 - 1.0 / max(0.1 * steps, 10.0)))


CHECK_STEP_FACTOR = 14  # the checks cost ~14 x probe_steps training steps (below)
MIN_PROBE_STEPS = 10


def check_steps(budget: float, step_seconds: float) -> dict[str, int]:
    """Step counts for the babysitter's checks that fit their share of the budget: the LR
    range test (2 x probe_steps) and the five LR probes cost ~7 x probe_steps training steps,
    overfitting (3 x probe_steps at a fifth of the batch) ~1 more: ~8. The checks ran at
    ~1.8x the probe's median step (gradient check, the probes' validation, fresh models),
    hence CHECK_STEP_FACTOR = 14."""
    probe = int(min(100, max(MIN_PROBE_STEPS, budget / (CHECK_STEP_FACTOR * max(step_seconds, 1e-6)))))
    return {"probe_steps": probe, "range_steps": min(100, max(20, 2 * probe)),
            "overfit_steps": min(300, max(30, 3 * probe))}
