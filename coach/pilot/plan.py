"""The autopilot's sizing: pure functions of measured seconds and the data's size.

Nothing here times or trains anything, so every rule is tested with plain numbers. The
rules, in the order the autopilot applies them (what it then judges: coach.pilot.judge):

1. the final training needs enough epochs to converge (`epochs_needed`): the lectures'
   "refine, train 10-20 epochs" (the top of that range when the floor augments its data,
   which slows the fitting), and enough updates on small data, where an epoch is few;
2. the model is the widest of the plain recipe's family that gets those epochs in the time
   for training (`choose_width`): a faster machine measures cheaper steps and gets a wider
   model, a longer budget a wider model rather than epochs past what the width needs; an
   augmented floor whose plain width cannot get its epochs leaves the augmentation out when
   that buys a wider model (`choose_floor`: augmentation pays late, so fit first);
3. what the time holds past one model of that width: ensemble members (`members`), and the
   babysitter's checks sized to their share (`check_steps`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from coach.pilot.cost import Cost

TARGET_EPOCHS = 10  # the lectures' babysitting step 5: "refine, train 10-20 epochs"
AUGMENTED_EPOCHS = 20  # the top of that range for a floor that augments: augmentation slows the fitting
MIN_EPOCHS = 2  # a wider model's 2-3 epochs matched or beat a narrower one's 4-10 (Fashion-MNIST, measured)
MIN_UPDATES = 2000  # on small data an epoch is a few steps; SGD still needs its updates
MAX_NEEDED_EPOCHS = 60
MAX_FINAL_EPOCHS = 300  # past this, extra time goes to decisions and ensemble members instead
EVAL_SHARE = 0.05  # validation may take this share of a run's time: on big validation splits it runs less often
PARAMS_PER_EXAMPLE = 200  # the widest model considered has at most this many parameters per training example
MAX_MEMBERS = 5  # ensemble members of the final training at most ("2% extra", lecture 7)


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


def augmentation_pays(epoch_seconds: float, seconds: float) -> bool:
    """Augmentation pays late: it slows the fitting, so an augmented floor needs the top of the
    lectures' 10-20 epochs (AUGMENTED_EPOCHS). When its model cannot get them in the time for
    training, the floor may fit first, without it (`choose_floor`: when that buys width). Measured (Fashion-MNIST, 10 minutes, 2 CPU cores,
    the plain width getting 16-19 epochs): with 2-px crops width 32 0.9347-0.9365 and width 48
    (9 epochs) 0.9298; without them width 48 for 9.5 epochs 0.9380, the lectures' recipe with
    crops 0.9370. Given 20+ epochs the crops won (0.9383 against 0.9307 at 23 epochs)."""
    return AUGMENTED_EPOCHS * epoch_seconds <= seconds


def keeps_augmentation(n_train: int, batch_size: int, epoch_seconds: float, seconds: float) -> bool:
    """Whether an augmented floor keeps its augmentation: yes when its model gets the epochs
    augmentation needs (`augmentation_pays`), or when augmentation does not raise the target
    (small data, where the updates an epoch holds decide it)."""
    return epochs_needed(n_train, batch_size, augmented=True)[0] <= epochs_needed(n_train, batch_size)[0] \
        or augmentation_pays(epoch_seconds, seconds)


def without_augmentation(kind: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """The overrides that take the floor's augmentation out (the "no augmentation" option's)."""
    first = next((v for k, v in augmentations(kind, shape).items() if k != "none"), {})
    return {k: False if isinstance(v, bool) else 0 for k, v in first.items()}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(n_train // max(min(batch_size, n_train), 1), 1)


def epochs_needed(n_train: int, batch_size: int, augmented: bool = False) -> tuple[int, int, str]:
    """(target, minimum, why): the final training aims at `target` epochs (the lectures'
    10-20: 10, or 20 when the data are augmented, since augmentation slows the fitting; more on
    small data where an epoch is few updates) and a model is never so wide that it gets under
    `minimum`."""
    spe = steps_per_epoch(n_train, batch_size)
    extra = math.ceil(MIN_UPDATES / spe)
    base = AUGMENTED_EPOCHS if augmented else TARGET_EPOCHS
    target = min(MAX_NEEDED_EPOCHS, max(base, extra))
    minimum = min(target, max(MIN_EPOCHS, math.ceil(extra / 4)))
    why = (f"{target} epochs (the lectures' 10-20 for the final training"
           + (", the top of the range with augmentation, which slows the fitting)" if augmented else ")")
           if target == base else
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


def members(seconds: float, needed: float, most: float) -> tuple[int, str]:
    """How many models of the chosen width the final training trains, for an ensemble: as many
    as the time holds of models that each get the epochs they need (`needed` seconds), or that
    each get all they can use (`most`, MAX_FINAL_EPOCHS), up to MAX_MEMBERS. The width comes
    first (a wider model gets the time while one gets its epochs); a second model comes when
    the width can grow no more (the ladder's top, the parameters per example, your module's
    one size) or the next width would not get its epochs. On Fashion-MNIST 20 minutes' worth of
    training gave one model of width 48 0.9405, two of width 32 (ensembled) 0.9400, one of
    width 32 0.935-0.937: capacity first, then "2% extra" (lecture 7: model ensembles)."""
    k = int(min(MAX_MEMBERS, max(1, seconds // max(needed, 1e-9), seconds // max(most, 1e-9))))
    why = ("one model" if k == 1 else
           f"{k} models, each with the epochs it needs, for an ensemble (the time holds {seconds / needed:.1f} "
           "of them)")
    return k, why


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


def choose_floor(costs: list[Cost], seconds: float, sizing: Sizing, n_train: int, batch_size: int,
                 plain_width: int, augmented: bool) -> tuple[Cost, str, tuple[int, int, str], bool]:
    """The width, its reason, the epochs needed and whether the floor's augmentation is left
    out. An augmented floor whose plain width cannot get the epochs augmentation needs
    (`keeps_augmentation`) leaves it out when that buys a wider model (the widest that gets the
    unaugmented target); at the same width the crops stay, since they won there even short of
    their epochs (width 32, 16-19 epochs: 0.935-0.937 with crops, 0.931 without)."""
    needs = epochs_needed(n_train, batch_size, augmented)
    if augmented and not keeps_augmentation(n_train, batch_size, sizing.epoch(_plain(costs, plain_width)), seconds):
        bare = epochs_needed(n_train, batch_size)
        pick, why = choose_width(costs, seconds, bare[0], bare[1], sizing, n_train, plain_width)
        if pick.width > plain_width:
            plain_epochs = seconds / sizing.epoch(_plain(costs, plain_width))
            return pick, why, (bare[0], bare[1], bare[2] + (
                f"; the floor's augmentation left out: width {plain_width} would get {plain_epochs:.1f} of the "
                f"{AUGMENTED_EPOCHS} epochs an augmented floor needs, and without it width {pick.width} gets its "
                f"{bare[0]} (augmentation pays late: fit first)")), True
    pick, why = choose_width(costs, seconds, needs[0], needs[1], sizing, n_train, plain_width)
    return pick, why, needs, False


def _plain(costs: list[Cost], width: int) -> Cost:
    return next((c for c in costs if c.width == width), min(costs, key=lambda c: c.width))


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
