"""The autopilot's sizing, on plain numbers: epochs needed, model size, the floor's
augmentation, ensemble members, the price of an epoch at the batch chosen."""
import math

import pytest

from coach.pilot import plan as P
from coach.pilot.cost import Cost


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


def test_augmentation_asks_for_the_top_of_the_lectures_range():
    assert P.epochs_needed(54_000, 128, augmented=True)[0] == P.AUGMENTED_EPOCHS == 20
    assert "augmentation" in P.epochs_needed(54_000, 128, augmented=True)[2]
    assert P.epochs_needed(1_300, 128, augmented=True)[0] == P.MAX_NEEDED_EPOCHS  # small data: the updates decide


def test_augmentations_keep_labels_by_kind():
    assert P.augmentations("image", (3, 32, 32)) == {"none": {}, "crops": {"augment.crop_padding": 2},
                                                      "crops+flips": {"augment.crop_padding": 2, "augment.hflip": True}}
    assert P.augmentations("image", (1, 8, 8))["crops"] == {"augment.crop_padding": 1}  # 2 px would be 25%
    assert P.augmentations("signal", (1, 40)) == {"none": {}, "shifts": {"augment.shift": 2}}
    assert P.augmentations("vector", (64,)) == {"none": {}}


def test_ema_window_follows_run_length():
    assert P.ema_decay_for(100) == 0.9 and 0.99 < P.ema_decay_for(5000) < 0.999


def test_a_budget_that_holds_two_trainings_trains_an_ensemble():
    # each model needs 490 s (20 epochs of 24.5 s): 540 s hold one, 1130 s two
    assert P.members(540.0, 490.0, 7350.0)[0] == 1
    k, why = P.members(1130.0, 490.0, 7350.0)
    assert k == 2 and "ensemble" in why
    # small data: a model can use only 12 s (MAX_FINAL_EPOCHS); the time holds more, up to MAX_MEMBERS
    assert P.members(45.0, 2.4, 12.0)[0] == P.MAX_MEMBERS
    assert P.members(30.0, 20.0, 12.0)[0] == 2  # the cap alone asks for two


def test_augmentation_is_left_out_when_the_floor_cannot_get_the_epochs_it_needs():
    """Augmentation pays late: an augmented floor whose model gets under AUGMENTED_EPOCHS in the
    time fits first, without it (Fashion-MNIST, 10 minutes on 2 cores: 16-19 epochs of width 32)."""
    epoch = 30.0  # seconds an epoch of the plain width
    assert P.keeps_augmentation(54_000, 128, epoch, seconds=P.AUGMENTED_EPOCHS * epoch)
    assert not P.keeps_augmentation(54_000, 128, epoch, seconds=18 * epoch)
    # small data: the updates an epoch holds decide the target, augmentation does not raise it
    assert P.keeps_augmentation(8_000, 128, epoch, seconds=5 * epoch)
    assert P.without_augmentation("image", (1, 28, 28)) == {"augment.crop_padding": 0}
    assert P.without_augmentation("signal", (1, 40)) == {"augment.shift": 0}
    assert P.without_augmentation("vector", (64,)) == {}


def test_a_floor_without_its_augmentation_plans_and_trains_unaugmented(tmp_path):
    """What the cost stage records is what the later stages use: the epochs needed without
    augmentation, and a base config without it."""
    from coach.config import make_config
    from coach.pilot.session import Session
    from coach.pilot.stages import Pilot

    cfg = make_config({"data": {"name": "digits"}, "augment": {"crop_padding": 1}})
    data = type("D", (), {"train": [0] * 54_000})()
    s = Session(tmp_path, budget=600.0, quiet=True)
    p = Pilot(s, data, cfg, "", P.Sizing(421, 6000), P.epochs_needed(54_000, 128, augmented=True))
    s.record("cost", {"costs": [Cost(32, 0.05, 1e-4, 0).to_dict()], "width": 32, "settings": {},
                      "floor": {"augment.crop_padding": 0}, "epochs": list(P.epochs_needed(54_000, 128)[:2])})
    assert p.needs()[0] == P.TARGET_EPOCHS and p.base().augment.crop_padding == 0
    kept = Session(tmp_path / "kept", budget=600.0, quiet=True)
    kept.record("cost", {"costs": [Cost(32, 0.05, 1e-4, 0).to_dict()], "width": 32, "settings": {}, "floor": {},
                         "epochs": list(P.epochs_needed(54_000, 128, augmented=True)[:2])})
    q = Pilot(kept, data, cfg, "", P.Sizing(421, 6000), P.epochs_needed(54_000, 128, augmented=True))
    assert q.needs()[0] == P.AUGMENTED_EPOCHS and q.base().augment.crop_padding == 1


def test_the_floor_leaves_its_augmentation_out_only_for_a_wider_model():
    """Fit first only when that buys width: without the crops the widest size that gets the
    unaugmented target; at the same width the crops stay (they won there even short of their
    epochs)."""
    sizing = P.Sizing(421, 6000, ema=False)
    c32, c48 = Cost(32, 0.06, 1e-5, 75_000), Cost(48, 0.10, 2e-5, 160_000)
    e32, e48 = sizing.epoch(c32), sizing.epoch(c48)
    # 17.5 epochs of width 32 (under the 20 crops need), 10.5 of width 48: width 48 without crops
    pick, _, needs, bare = P.choose_floor([c32, c48], 10.5 * e48, sizing, 54_000, 128, 32, augmented=True)
    assert bare and pick.width == 48 and needs[0] == P.TARGET_EPOCHS and "left out" in needs[2]
    # width 48 would get 9.5 epochs: no wider model, so the crops stay on width 32
    pick, _, needs, bare = P.choose_floor([c32, c48], 9.5 * e48, sizing, 54_000, 128, 32, augmented=True)
    assert not bare and pick.width == 32 and needs[0] == P.AUGMENTED_EPOCHS
    # 20 epochs of width 32: the crops get what they need
    pick, _, needs, bare = P.choose_floor([c32, c48], 20 * e32, sizing, 54_000, 128, 32, augmented=True)
    assert not bare and pick.width == 32
    assert P.choose_floor([c32, c48], 10.5 * e48, sizing, 54_000, 128, 32, augmented=False)[3] is False


def test_an_epoch_is_priced_at_the_batch_the_cost_stage_chose(tmp_path):
    """A doubled batch halves the steps of an epoch: priced at the floor's 421 steps, a session
    that doubled its batch planned 11.4 epochs of width 32 and trained 18."""
    from coach.config import make_config
    from coach.pilot.session import Session
    from coach.pilot.stages import Pilot

    data = type("D", (), {"train": [0] * 54_000})()
    s = Session(tmp_path, budget=600.0, quiet=True)
    p = Pilot(s, data, make_config({"train": {"batch_size": 128}}), "", P.Sizing(421, 6000), (20, 2, ""))
    s.record("cost", {"costs": [], "width": 32, "settings": {"train.batch_size": 256, "optim.lr": 4e-3}})
    c = Cost(32, 0.1, 1e-5, 0)
    assert p.priced().steps_per_epoch == 210 and p.priced().epoch(c) < 0.55 * p.sizing.epoch(c)
