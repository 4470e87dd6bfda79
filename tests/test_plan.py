"""The autopilot's planners, on plain numbers: epochs needed, model size, what the search can
decide (3 trials per dimension), successive halving's cost, the floor's noise margin."""
import math

import pytest

from coach.autopilot import plan as P
from coach.autopilot.cost import Cost
from coach.search.space import too_few_trials


def test_epochs_needed_follow_the_data():
    target, minimum, why = P.epochs_needed(54_000, 128)  # Fashion-MNIST: 421 steps an epoch
    assert (target, minimum) == (P.TARGET_EPOCHS, P.MIN_EPOCHS) and "10-20" in why
    target, minimum, why = P.epochs_needed(1_300, 128)  # 10 steps an epoch: the update count decides, capped
    assert target == P.MAX_NEEDED_EPOCHS and minimum == 50 and "capped" in why
    target, minimum, _ = P.epochs_needed(8_000, 128)  # 62 steps an epoch
    assert target == math.ceil(P.MIN_UPDATES / 62) and minimum == math.ceil(target / 4)


def costs(*pairs):
    return [Cost(w, s, s / 300, 60 * w * w) for w, s in pairs]


def test_width_is_the_widest_that_gets_its_epochs():
    ladder = costs((8, 0.01), (16, 0.02), (32, 0.05), (64, 0.2))
    sizing = P.Sizing(steps_per_epoch=100, n_val=0, ema=False)  # an epoch is 100 steps, no validation
    # 10 epochs in 60 s: width 32 (5 s/epoch -> 50 s) fits, width 64 (20 s/epoch -> 200 s) does not
    pick, why = P.choose_width(ladder, 60.0, 10, 3, sizing, n_train=10**6, plain_width=32)
    assert pick.width == 32 and "width 64 would get 3.0" in why
    # a faster machine (steps 4x cheaper) affords the wider model: nothing is tuned to 2 cores
    fast = [Cost(c.width, c.step / 4, c.eval_example / 4, c.params) for c in ladder]
    assert P.choose_width(fast, 60.0, 10, 3, sizing, 10**6, 32)[0].width == 64
    # too little time for 10 epochs of the plain width: keep the plain width while it gets 3, rather
    # than shrink to the width that gets 10 (a wide model's few epochs beat a narrow one's many)
    assert P.choose_width(ladder, 20.0, 10, 3, sizing, 10**6, 32)[0].width == 32  # 4 epochs of width 32
    assert P.choose_width(ladder, 10.0, 10, 3, sizing, 10**6, 32)[0].width == 16  # 32 would get 2
    # nothing affords even the minimum: the smallest, said so
    pick, why = P.choose_width(ladder, 1.0, 10, 3, sizing, 10**6, 32)
    assert pick.width == 8 and "no measured size affords 3 epochs" in why
    # tiny data caps the parameters (200 per example): 64 -> 245,760 params > 200 * 1000
    assert P.choose_width(fast, 60.0, 10, 3, sizing, n_train=1000, plain_width=32)[0].width == 32


def test_validation_is_priced_into_an_epoch():
    c = Cost(32, step=0.1, eval_example=0.001, params=1)
    assert c.epoch(100, 1000) == pytest.approx(10 + 1)
    # validation of the weights and their EMA (2 s) would be 20% of a 10 s epoch: it runs every
    # 4 epochs instead, so it costs EVAL_SHARE of the training time
    sizing = P.Sizing(100, 1000, ema=True)
    assert sizing.val_seconds(c) == pytest.approx(2.0)
    assert sizing.evals_per_epoch(c) == pytest.approx(P.EVAL_SHARE * 10 / 2)
    assert sizing.eval_every(c) == 400 and sizing.epoch(c) == pytest.approx(10 * (1 + P.EVAL_SHARE))
    cheap = P.Sizing(100, 10, ema=True)  # a small validation split: once an epoch
    assert cheap.eval_every(c) == 100 and cheap.epoch(c) == pytest.approx(10 + 0.02)


def test_the_search_decides_only_what_the_budget_can():
    # 1000 s to train, 10 s epochs, 1-epoch trials at the shortest: room for several dimensions
    rich = P.plan_search("image", (1, 28, 28), 1000.0, 10.0, 0.01, epochs=10)
    assert rich.arms == 3 * len(rich.dims) and len(rich.dims) >= 2  # 3 finished trials per dimension
    assert not too_few_trials(rich.arms, len(rich.dims))  # the command center would not object
    assert rich.losers == pytest.approx(P.SEARCH_SHARE * 1000)  # trials stretched to use the share, no more
    assert rich.losers == pytest.approx(2 * sum(rich.rungs))  # two of each rung's three arms lose
    assert 1000 - rich.losers >= 10 * 10  # the winner still gets the epochs it needs
    assert rich.dims == P.PRIORITY["image"][:len(rich.dims)] and rich.dims[0] == "augmentation"
    # the plain recipe trains first (the trunk), every rung branches later: the final keeps a rung's length
    assert rich.trunk == pytest.approx(P.TRUNK_SHARE * 1000)
    assert rich.seconds == pytest.approx(rich.trunk + 3 * sum(rich.rungs)) and 1000 - rich.seconds >= rich.rungs[0]
    assert rich.dropped == P.PRIORITY["image"][len(rich.dims):]
    # less time: fewer dimensions, the rest named as fixed
    poor = P.plan_search("image", (1, 28, 28), 150.0, 10.0, 0.01, epochs=10)
    assert poor.dims == ["augmentation"] and poor.arms == 3 and "stay at the plain recipe" in poor.why
    assert poor.trial_seconds == pytest.approx(P.SEARCH_SHARE * 150 / 2)  # 2 losers x 18.75 s = 25% of 150 s
    # too little for even 3 trials: no search at all, and it says why
    none = P.plan_search("image", (1, 28, 28), 60.0, 10.0, 0.01, epochs=10)
    assert none.dims == [] and none.arms == 0 and "no search" in none.why
    # a trial is at least MIN_TRIAL_STEPS steps even when an epoch is shorter
    short = P.plan_search("signal", (1, 40), 100.0, 0.05, 0.05, epochs=60)
    assert short.dims and short.trial_seconds >= P.MIN_TRIAL_STEPS * 0.05


def test_the_search_decides_regularization_not_the_learning_rate():
    # trials continue from trained weights, where the LR that disturbs them least looks best;
    # the LR is the checks' (from scratch), dropout would change the layers a trial continues
    assert all("optim.lr" not in dims and "regularize.dropout" not in dims for dims in P.PRIORITY.values())
    space = P.space_for("image", (1, 28, 28))
    assert space["augmentation"] == "choice([none, crops, crops+flips])"
    assert P.space_for("signal", (1, 40))["augmentation"] == "choice([none, shifts])"


def test_augmentations_keep_labels_by_kind():
    assert P.augmentations("image", (3, 32, 32)) == {"none": {}, "crops": {"augment.crop_padding": 2},
                                                      "crops+flips": {"augment.crop_padding": 2, "augment.hflip": True}}
    assert P.augmentations("image", (1, 8, 8))["crops"] == {"augment.crop_padding": 1}  # 2 px would be 25%
    assert P.augmentations("signal", (1, 40)) == {"none": {}, "shifts": {"augment.shift": 2}}
    assert P.augmentations("vector", (64,)) == {"none": {}}


def test_noise_margin_is_one_standard_error():
    assert P.noise_margin(0.9, 6000) == pytest.approx(math.sqrt(0.9 * 0.1 / 6000))
    assert P.noise_margin(0.9, 100) > P.noise_margin(0.9, 10_000)


def test_ema_window_follows_run_length():
    assert P.ema_decay_for(100) == 0.9 and 0.99 < P.ema_decay_for(5000) < 0.999


def test_compute_bound_means_no_search():
    # Fashion-MNIST on 2 cores: 58 s an epoch of the plain width; 10 minutes leave ~560 s
    assert P.compute_bound(560.0, 58.0) and not P.compute_bound(600.0, 58.0)
    plan = P.no_search("image", "compute-bound: every second trains")
    assert plan.dims == [] and plan.dropped == P.PRIORITY["image"] and "compute-bound" in plan.why
