"""Bugs in a hand-written loop, each planted and named by its mechanism (coach.babysit.userbugs);
healthy loops that look like them stay quiet. Every class has a test here that fails when its
detector is removed (bench/userbugs.py measures recall over more cases, Lightning included)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coach
from coach.babysit import userbugs as U
from coach.babysit.findings import problems


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    return (x - x.mean()) / x.std(), torch.tensor(y)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))


def loop(data, bug=None, epochs=3):
    """A plain digits loop under coach.watch with one bug planted; returns the warnings and errors."""
    x, y = data
    model = net()
    params = list(model[-1].parameters()) if bug == "head_only" else list(model.parameters())
    if bug == "frozen_head":
        for p in model[-1].parameters():
            p.requires_grad_(False)
    if bug == "frozen_backbone":
        for p in list(model.parameters())[:-2]:
            p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5) if bug in ("per_batch_schedule", "per_epoch_schedule") \
        else None
    if bug == "eval_before":
        model.eval()
    with coach.watch(model, opt, num_classes=10) as w:
        for epoch in range(epochs):
            order = torch.argsort(y[:1500], stable=True) if bug == "sorted" else torch.randperm(1500)
            for i in range(30):
                idx = order[i * 50:(i + 1) * 50]
                out = model(x[idx])
                loss = F.cross_entropy(out.softmax(1), y[idx]) if bug == "softmax" else \
                    F.nll_loss(out.softmax(1), y[idx]) if bug == "nll_probs" else \
                    F.nll_loss(F.log_softmax(out, 1), y[idx]) if bug == "nll_log" else F.cross_entropy(out, y[idx])
                if bug == "accumulate_on_purpose":
                    (loss / 2).backward()
                    if i % 2:
                        opt.step()
                        opt.zero_grad()
                        w.step(loss)
                    continue
                if bug != "no_zero_grad":
                    opt.zero_grad()
                loss.backward()
                if bug in ("clip_tiny", "clip_one"):
                    nn.utils.clip_grad_norm_(model.parameters(), 1e-3 if bug == "clip_tiny" else 1.0)
                opt.step()
                if sched is not None and bug == "per_batch_schedule":
                    sched.step()
                w.step(loss)
            if sched is not None and bug == "per_epoch_schedule":
                sched.step()
            model.eval()
            with torch.no_grad():
                acc = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
            if bug != "no_train_after_eval":
                model.train()
            w.evaluate(val_acc=acc, val_examples=len(x) - 1500)
    return [f.code for f in problems(w.findings)]


@pytest.mark.parametrize("bug, code", [
    ("no_zero_grad", "grads_accumulate"),
    ("softmax", "softmax_before_loss"),
    ("nll_probs", "loss_on_probabilities"),
    ("eval_before", "training_in_eval_mode"),
    ("no_train_after_eval", "training_in_eval_mode"),
    ("head_only", "params_not_updated"),
    ("frozen_head", "params_frozen"),
    ("sorted", "data_not_shuffled"),
    ("clip_tiny", "grad_clip_too_hard"),
    ("per_batch_schedule", "schedule_too_fast"),
])
def test_a_planted_bug_is_named_first(digits, bug, code):
    codes = loop(digits, bug)
    assert codes and codes[0] == code, codes


@pytest.mark.parametrize("healthy", [None, "accumulate_on_purpose", "frozen_backbone", "clip_one",
                                     "per_epoch_schedule", "nll_log"])
def test_healthy_loops_that_look_like_the_bugs_stay_quiet(digits, healthy):
    assert loop(digits, healthy) == []


def test_a_forward_that_mixes_the_batch_is_found_in_eval_mode():
    class Mixer(nn.Module):
        def __init__(self, mix):
            super().__init__()
            self.mix, self.a, self.bn = mix, nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x):
            h = self.bn(self.a(x))  # batch norm couples the batch in training mode only
            return h.t().reshape(len(x), -1) if self.mix else h

    x = torch.randn(8, 4)
    bad = Mixer(True).train()
    f = U.batch_dependence(bad, x)
    assert f is not None and f.code == "batch_dependence" and bad.training  # the mode is put back
    assert U.batch_dependence(Mixer(False).train(), x) is None  # batch norm alone is no bug


def test_labels_shifted_or_sorted_apart_are_misaligned(digits):
    x, y = digits
    assert U.label_alignment(x, y) is None
    shifted = U.label_alignment(x, torch.roll(y, 2))
    assert shifted is not None and shifted.evidence["shift"] == -2
    assert U.label_alignment(x, torch.sort(y).values).code == "labels_misaligned"
    together = torch.argsort(y, stable=True)  # sorted with their inputs: aligned
    assert U.label_alignment(x[together], y[together]) is None


def test_check_names_the_misalignment_and_the_mixed_batch(digits):
    x, y = digits
    r = coach.check(net(), (x.numpy(), np.roll(y.numpy(), 1)), probe_steps=10, range_steps=20, overfit_steps=40)
    assert r.findings[0].code == "labels_misaligned" and "label_problem" not in [f.code for f in r.findings]


def test_the_loss_graph_says_what_the_loss_was_computed_from():
    z = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    assert U.loss_graph(F.cross_entropy(z, y)) is None
    assert U.loss_graph(F.cross_entropy(z.softmax(1), y)) == "softmax_before_loss"
    assert U.loss_graph(F.nll_loss(z.softmax(1), y)) == "loss_on_probabilities"
    assert U.loss_graph(F.nll_loss(torch.log(z.softmax(1)), y)) is None
    assert U.loss_graph(F.cross_entropy(z, y, label_smoothing=0.1) * 2) is None


def test_a_watched_loop_at_chance_gets_at_chance(digits):
    x, y = digits
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # learns nothing
    with coach.watch(model, opt, num_classes=10) as w:
        for i in range(30):
            loss = F.cross_entropy(model(x[i * 50:(i + 1) * 50]), y[i * 50:(i + 1) * 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
        w.evaluate(val_acc=0.1)
    assert "at_chance" in [f.code for f in w.findings]


def test_inputs_on_another_scale_than_training_are_warned_about(digits):
    x, y = digits
    run = coach.fit(net(), (x, y), epochs=1, progress=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run.predict(x[:20])
        assert not seen
        run.predict(x[:20] * 255)
    assert any("input_scale_mismatch" in str(w.message) for w in seen)
