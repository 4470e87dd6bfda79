"""The autopilot's decisions: which departures from the floor are worth judging, how long to
judge them, and the verdict. Pure functions of measured seconds and errors, tested with
plain numbers (coach.pilot.decide runs what they plan).

1. a decision is judged at the length that counts (`plan_decisions`): each option is trained
   to the end of its own schedule at two lengths, and the trend is extrapolated to the final
   training's length (coach.sweep.curves; learning-curve extrapolation, Domhan et al. 2015).
   Only the time the final does not need is spent on it, and only when the lengths it affords
   are within MAX_EXTRAPOLATION of the final's: a shorter comparison ranks options by how fast
   they fit, not by where they end;
2. the floor wins unless an option's predicted gain beats the noise (`judge`): one paired
   standard error of the prediction (the Tuning Playbook: an improvement smaller than the
   noise is not an improvement); the floor's generalization gap is projected to the final
   length (`project_gap`), not read early.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from coach.pilot.plan import without_augmentation
from coach.sweep import curves

MAX_EXTRAPOLATION = 8.0  # a decision's longest runs are at least 1/8 of the final training's length
DECISION_SHARE = 0.3  # at most this share of the training time goes to judging decisions
MIN_ARM_STEPS = 100  # a complete run shorter than this mostly measures its warm-up
MAX_JUDGEMENT_SE = 0.005  # a judgement noisier than this is not worth its time: the options' gains measured
# here are a few tenths of a point (Fashion-MNIST, 15 minutes: mirror flips +0.0006 +- 0.0070), and under
# the 1-SE rule such a judgement adopts a useless option 16% of the time and finds a half-point gain less
# often than not


@dataclass(frozen=True)
class Option:
    """One departure from the floor: a name for people, its group (one winner per group), the
    config overrides, and whether it adds regularization (tried first when the floor overfits)
    or takes some away / adds capacity (tried first when it does not)."""
    name: str
    group: str
    overrides: dict[str, Any]
    regularizes: bool


def options_for(kind: str, shape: tuple[int, ...], weight_decay: float, wider: int | None,
                mirrors: bool = True) -> list[Option]:
    """The departures worth judging for this kind of data, each against the floor: the floor's
    augmentation left out (a small or very short problem may be better without it), mirror
    flips added (for images, where only evidence can say whether the data have a side: shoes
    and digits do), its label smoothing left out, a stronger weight decay (vectors), one ladder step wider
    (`wider`: when the final training could afford it). `mirrors`: False when the images are
    too small or are not images."""
    out = []
    if without_augmentation(kind, shape):
        out.append(Option("no augmentation", "augmentation", without_augmentation(kind, shape), regularizes=False))
    if kind == "image" and mirrors:
        out.append(Option("+ mirror flips", "augmentation", {"augment.hflip": True}, regularizes=True))
    out.append(Option("no label smoothing", "label smoothing", {"regularize.label_smoothing": 0.0},
                      regularizes=False))
    if kind == "vector":
        out.append(Option(f"weight decay {10 * weight_decay:g}", "weight decay",
                          {"optim.weight_decay": 10 * weight_decay}, regularizes=True))
    if wider is not None:
        out.append(Option(f"width {wider}", "width", {"model.width": wider}, regularizes=False))
    return out


def order_options(options: list[Option], overfitting: bool) -> list[Option]:
    """The lectures' reading of the gap: overfitting calls for regularization first; a model
    that does not overfit for less of it, or more capacity, first."""
    return sorted(options, key=lambda o: o.regularizes != overfitting)


@dataclass
class DecisionPlan:
    lengths: list[float]  # seconds of each option's complete runs, shortest first
    final: float  # seconds the final training is planned to get: where the curves are extrapolated to
    arms: int  # the floor and the options it affords (options are the first arms - 1, in the order tried)
    seconds: float  # all the runs' seconds
    why: str
    max_se: float = MAX_JUDGEMENT_SE  # the options are judged only while the judgement promises this noise at most

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_decisions(options: int, seconds: float, needed: float, step_seconds: float, most: float,
                   members: int = 1) -> DecisionPlan:
    """How many options can be judged, with runs of which lengths. `seconds`: all the training
    time; `needed`: what the final training at the chosen width needs (its target epochs, for
    each of its `members`); `most`: what it can use at all (MAX_FINAL_EPOCHS each). The curves
    are extrapolated to what one member trains. Only the time it does not need is spent
    (at most DECISION_SHARE of `seconds`, or half of what it cannot use: the other half trains
    ensemble members), as complete runs of each arm
    (the floor and each option) at two lengths, the longer twice the shorter (1.5x its
    length per arm in all); the longer must be within MAX_EXTRAPOLATION of the final's length,
    the shorter at least MIN_ARM_STEPS steps. The most options that fit, else none."""
    spare = min(seconds - needed, max(DECISION_SHARE * seconds, (seconds - most) / 2))
    shortest = 2 * MIN_ARM_STEPS * step_seconds  # the longer run, when the shorter is MIN_ARM_STEPS
    for n in range(options, 0, -1):
        arms = n + 1
        final = min(seconds - spare, most) / members
        longer = min(spare / (1.5 * arms), final)
        if longer >= shortest and final / max(longer, 1e-9) <= MAX_EXTRAPOLATION:
            used = 1.5 * arms * longer
            final = min(seconds - used, most) / members
            why = (f"{n} option{'s' * (n > 1)} judged against the floor: each trained to the end of its own schedule "
                   f"for {longer / 2:.0f}s and {longer:.0f}s, extrapolated to the final training's {final:.0f}s; "
                   f"{used:.0f}s ({used / max(seconds, 1e-9):.0%} of the {seconds:.0f}s for training) of time the "
                   f"final training does not need")
            if n < options:
                why += f"; {options - n} more would not fit"
            return DecisionPlan([longer / 2, longer], final, arms, used, why)
    reason = ("the final training needs all the time" if spare <= 0 else
              f"the {max(spare, 0):.0f}s the final training does not need would judge one option only with runs "
              f"under 1/{MAX_EXTRAPOLATION:g} of its length: such runs rank options by how fast they fit, not by "
              "where they end")
    return no_decisions(min(seconds, most) / members, reason)


def no_decisions(seconds: float, reason: str) -> DecisionPlan:
    return DecisionPlan([], seconds, 1, 0.0, f"no decisions: {reason}; every second trains the floor")


@dataclass(frozen=True)
class Measured:
    """A complete run of one arm at one length (its planned seconds): its validation error, its
    training accuracy (eval mode, as many examples) and which validation examples it got wrong
    (for paired standard errors between arms on the same split)."""
    seconds: float
    val_error: float
    train_acc: float
    wrong: frozenset[int]


def paired(a: Measured, b: Measured, n: int) -> tuple[float, float]:
    """b's gain over a in validation error (positive: b is better) and its standard error,
    paired on the same n examples (only the examples they disagree on carry noise)."""
    gain = len(a.wrong - b.wrong) / n - len(b.wrong - a.wrong) / n
    second = (len(a.wrong - b.wrong) + len(b.wrong - a.wrong)) / n
    return gain, math.sqrt(max(second - gain ** 2, 1.0 / n ** 2) / n)


@dataclass
class Verdict:
    option: str
    gain: float  # predicted gain in validation accuracy at the final length over the floor
    se: float
    predicted_acc: float  # the option's own extrapolated validation accuracy
    adopted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Judgement:
    verdicts: list[Verdict]
    adopted: list[str]  # option names, one per group at most
    floor_acc: float  # the floor's extrapolated validation accuracy
    gap: float  # the floor's train - validation accuracy, extrapolated to the final length
    gap_se: float
    overfitting: bool
    why: str = ""
    gaps: list[float] = field(default_factory=list)  # measured at each length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project_gap(floor: Sequence[Measured], target: float, n: int) -> tuple[float, float, bool]:
    """The floor's generalization gap (train - validation accuracy) at the final length, from
    its complete runs: (gap, its standard error, overfitting = over 2 standard errors)."""
    lengths = [m.seconds for m in floor]
    gaps = [m.train_acc - (1 - m.val_error) for m in floor]
    ses = [curves.binomial_se(m.val_error, n) * math.sqrt(2) for m in floor]
    e = curves.extrapolate(lengths, gaps, target, ses)
    return e.value, e.se, e.value > 2 * curves.binomial_se(floor[-1].val_error, n)


def predicted_se(floor: Sequence[Measured], se: float, target: float) -> float:
    """The standard error an option's extrapolated gain will have (as `judge` carries it
    through) when its paired standard error against the floor is `se` at each length: the
    extrapolation amplifies the noise of the runs it starts from (2.9x from runs of 1/14 and
    1/7 of the final's length). The floor's own two runs give `se` (decide.too_noisy) before any
    option is paid for."""
    lengths = [m.seconds for m in floor]
    w = curves.prediction_weights(lengths, target, curves.best_exponent(lengths, [m.val_error for m in floor]))
    return se * math.sqrt(float(w @ w))


def judge(floor: Sequence[Measured], arms: dict[str, Sequence[Measured]], groups: dict[str, str], target: float,
          n: int) -> Judgement:
    """Each option's gain over the floor at the final length, extrapolated from their complete
    runs at the same lengths (the difference of two curves of one exponent follows the same
    law), with its paired standard error carried through; an option is adopted when its gain
    beats one standard error, the best such in its group."""
    lengths = [m.seconds for m in floor]
    c = curves.best_exponent(lengths, [m.val_error for m in floor])
    w = curves.prediction_weights(lengths, target, c)
    floor_acc = 1 - float(w @ [m.val_error for m in floor])
    verdicts = []
    for name, runs in arms.items():
        if [m.seconds for m in runs] != lengths:
            continue  # not all its lengths finished in time: nothing to extrapolate
        gains = [paired(f, a, n) for f, a in zip(floor, runs)]
        gain = float(w @ [g for g, _ in gains])
        se = math.sqrt(sum((wi * s) ** 2 for wi, (_, s) in zip(w, gains)))
        verdicts.append(Verdict(name, gain, se, 1 - float(w @ [m.val_error for m in runs])))
    adopted: dict[str, Verdict] = {}
    for v in verdicts:
        g = groups[v.option]
        if v.gain > v.se and (g not in adopted or v.gain > adopted[g].gain):
            adopted[g] = v
    for v in adopted.values():
        v.adopted = True
    gap, gap_se, over = project_gap(floor, target, n) if floor else (0.0, 0.0, False)
    return Judgement(verdicts, [v.option for v in adopted.values()], floor_acc, gap, gap_se, over,
                     gaps=[m.train_acc - (1 - m.val_error) for m in floor])


def noise_margin(value: float, n_val: int) -> float:
    """One standard error of a validation accuracy near `value` on n_val examples: an arm must
    beat the floor by more than this to replace it."""
    p = min(max(value, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(n_val, 1))
