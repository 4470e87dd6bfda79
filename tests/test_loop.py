"""Every training setting proven to act: one real step of the fit loop against a hand computation.

The reference is built by hand from the same initial weights, the same batch (a pure
function of the seed and step) and the same augmentation generator state (seed + 1): the
loss written out from its definition, autograd for its gradient, plain SGD for the update.
A setting the loop ignored would leave the update of the plain cross-entropy step, which
differs from the expected one by far more than the tolerance.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import coach
from coach.train import Callback
from coach.train.callbacks import EMA
from coach.train.loop import Trainer, default_callbacks

LR = 0.1
BASE = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 32, "depth": 1, "norm": "none"},
        "optim": {"name": "sgd", "lr": LR}, "train": {"epochs": 1, "progress": False, "batch_size": 64}}


def trainer(tmp_path, callbacks=None, **over) -> Trainer:
    c = coach.make_config(BASE).replace(**over)
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = coach.load_data(c.data, c.seed)
    torch.manual_seed(c.seed)
    model = coach.build_model(c.model, data.input_shape, data.num_classes, c.regularize, data.preprocess,
                              batch=data.train.x[:256])
    cbs = callbacks(c, tmp_path) if callbacks else default_callbacks(c, tmp_path)
    return Trainer(c, data, model, tmp_path, torch.device("cpu"), cbs)


def one_step(tmp_path, hand_loss, grad_hook=None, **over):
    """Run the loop for one step; return (weights after it, weights hand-computed, the batch it saw)."""
    t = trainer(tmp_path, **{"train.max_steps": 1, **over})
    ref = copy.deepcopy(t.raw_model)
    x, y = t.next_batch()
    g = torch.Generator().manual_seed(t.cfg.seed + 1)  # the loop's augmentation stream
    xa, ya, yb, lam = t.augment(x, y, g) if t.augment.active else (x, y, y, 1.0)
    ref.train()
    hand_loss(ref, ref(xa), xa, ya, yb, lam).backward()
    grads = {n: p.grad.clone() for n, p in ref.named_parameters()}
    if grad_hook:
        grads = grad_hook(grads)
    expected = {n: p.detach() - LR * grads[n] for n, p in ref.named_parameters()}
    t.run()
    got = {n: p.detach() for n, p in t.raw_model.named_parameters()}
    return got, expected, (x, xa, lam)


def assert_same(got, expected, plain=None):
    for n in expected:
        assert torch.allclose(got[n], expected[n], atol=1e-6, rtol=1e-5), n


def weights(model):
    return [p for p in model.parameters() if p.ndim >= 2]  # what L1/L2 act on (biases are not decayed)


def test_l1_and_l2_add_their_gradients(tmp_path):
    def hand(model, scores, x, ya, yb, lam):
        ws = weights(model)
        return F.cross_entropy(scores, ya) + 0.5 * 0.1 * sum((w ** 2).sum() for w in ws) \
            + 0.01 * sum(w.abs().sum() for w in ws)

    got, expected, _ = one_step(tmp_path, hand, **{"regularize.l2": 0.1, "regularize.l1": 0.01})
    assert_same(got, expected)


def test_l2_by_its_gradient_formula(tmp_path):
    """grad = CE grad + l2 * W for weights, CE grad alone for biases."""
    def plain(model, scores, x, ya, yb, lam):
        return F.cross_entropy(scores, ya)

    t = trainer(tmp_path / "w")
    w0 = {n: p.detach().clone() for n, p in t.raw_model.named_parameters()}

    def add_l2(grads):
        return {n: g + 0.1 * w0[n] if g.ndim >= 2 else g for n, g in grads.items()}

    got, expected, _ = one_step(tmp_path / "r", plain, add_l2, **{"regularize.l2": 0.1})
    assert_same(got, expected)


def test_svm_loss_is_the_lectures_hinge(tmp_path):
    def hand(model, scores, x, ya, yb, lam):
        total = 0
        for s, yi in zip(scores, ya):  # L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1)
            total = total + sum(torch.clamp(s[j] - s[yi] + 1, min=0) for j in range(len(s)) if j != yi)
        return total / len(scores)

    got, expected, _ = one_step(tmp_path, hand, **{"train.loss": "svm"})
    assert_same(got, expected)


def test_label_smoothing_is_the_smoothed_cross_entropy(tmp_path):
    eps = 0.2

    def hand(model, scores, x, ya, yb, lam):
        logp = scores.log_softmax(1)
        return (-(1 - eps) * logp.gather(1, ya[:, None]).squeeze(1) - eps * logp.mean(1)).mean()

    got, expected, _ = one_step(tmp_path, hand, **{"regularize.label_smoothing": eps})
    assert_same(got, expected)


def _mixed(model, scores, x, ya, yb, lam):
    return lam * F.cross_entropy(scores, ya) + (1 - lam) * F.cross_entropy(scores, yb)


@pytest.mark.parametrize("setting", [{"augment.mixup": 0.4}, {"augment.cutmix": 1.0}])
def test_mixup_and_cutmix_train_on_mixed_batches_and_labels(tmp_path, setting):
    got, expected, (x, xa, lam) = one_step(tmp_path, _mixed, **setting)
    assert 0 < lam < 1 and not torch.equal(x, xa)
    assert_same(got, expected)


@pytest.mark.parametrize("setting", [{"augment.crop_padding": 2}, {"augment.hflip": True},
                                     {"augment.noise": 0.1}, {"augment.cutout": 3}])
def test_augmentation_is_applied_and_reproduced_from_the_generator(tmp_path, setting):
    def plain(model, scores, x, ya, yb, lam):
        return F.cross_entropy(scores, ya)

    got, expected, (x, xa, _) = one_step(tmp_path, plain, **setting)
    assert not torch.equal(x, xa)
    assert_same(got, expected)  # the loop trained on exactly the batch drawn from its generator


def test_grad_clip_bounds_the_global_norm(tmp_path):
    c = 0.05

    def plain(model, scores, x, ya, yb, lam):
        return F.cross_entropy(scores, ya)

    def clip(grads):
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads.values()))
        assert norm > 4 * c  # so clipping really changes this step
        return {n: g * c / norm for n, g in grads.items()}

    got, expected, _ = one_step(tmp_path, plain, clip, **{"train.grad_clip": c})
    assert_same(got, expected)


class Record(Callback):
    """The raw weights after every step."""

    def __init__(self):
        self.after = []

    def on_step_end(self, t, logs):
        self.after.append({k: v.detach().clone() for k, v in t.raw_model.state_dict().items()})


def test_ema_is_the_exponential_average_of_the_step_weights(tmp_path):
    d = 0.7
    rec = Record()
    t = trainer(tmp_path, lambda c, d_: default_callbacks(c, d_) + [rec],
                **{"train.ema": d, "train.max_steps": 5, "model.norm": "batch"})
    t.run()
    ema = next(cb for cb in t.callbacks if isinstance(cb, EMA)).averaged.module.state_dict()
    avg = dict(rec.after[0])  # torch's AveragedModel copies the first weights, then averages
    for w in rec.after[1:]:
        avg = {k: d * avg[k] + (1 - d) * w[k] if w[k].is_floating_point() else w[k] for k in w}
    for k in [k for k in avg if avg[k].is_floating_point()]:  # BN's running statistics too (use_buffers)
        assert torch.allclose(ema[k].float(), avg[k].float(), atol=1e-6), k
    assert any(not torch.allclose(ema[k], rec.after[-1][k]) for k in avg if avg[k].is_floating_point())
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "weights" / "ema.safetensors"))
    assert all(torch.equal(saved[k], ema[k]) for k in saved)


def test_dropout_is_active_in_training_steps(tmp_path):
    t = trainer(tmp_path, **{"regularize.dropout": 0.5})
    x, _ = t.next_batch()
    t.raw_model.train()
    a, b = t.raw_model(x), t.raw_model(x)
    t.raw_model.eval()
    assert not torch.allclose(a, b) and torch.equal(t.raw_model(x), t.raw_model(x))


class NaNAt(Callback):
    """Plants non-finite gradients at chosen steps."""

    def __init__(self, steps):
        self.steps = set(steps)

    def on_before_optimizer_step(self, t):
        if t.step in self.steps:
            next(t.raw_model.parameters()).grad.fill_(float("nan"))
            self.steps.discard(t.step)


def test_nonfinite_steps_roll_back_to_the_checkpoint_at_half_the_lr(tmp_path):
    rec = Record()
    t = trainer(tmp_path, lambda c, d: default_callbacks(c, d) + [NaNAt([12, 13, 14]), rec],
                **{"train.max_nonfinite": 3, "train.checkpoint_every": 10, "train.max_steps": 16,
                   "train.log_every": 1})
    lrs = []
    t.callbacks.append(type("LR", (Callback,), {"on_step_end": lambda self, t, logs: lrs.append(logs["lr"])})())
    summary = t.run()
    assert summary["skipped_steps"] == 3 and summary["rollbacks"] == 1 and t.lr_scale == 0.5
    # steps 1-12 went through; 13-15 were skipped; the third skip restored the step-10 checkpoint
    assert len(rec.after) == 12 + (t.step - 10)
    assert lrs[:12] == [LR] * 12 and lrs[12:] == [LR / 2] * (len(lrs) - 12)
    assert t.step == 16
    # the step after the roll-back started from the weights of step 10, not those of step 12
    replay = trainer(tmp_path / "replay", **{"train.max_steps": 10})
    replay.run()
    x, y = replay.next_batch()
    m = copy.deepcopy(replay.raw_model)
    F.cross_entropy(m(x), y).backward()
    w11 = {n: p.detach() - LR / 2 * p.grad for n, p in m.named_parameters()}
    after = rec.after[12]
    assert all(torch.allclose(after[n], w11[n], atol=1e-6) for n in w11)


def test_early_stopping_stops_after_patience_evaluations(tmp_path):
    rec = []
    t = trainer(tmp_path, lambda c, d: default_callbacks(c, d), **{
        "optim.lr": 1e-9, "train.epochs": 50, "train.early_stopping": 2, "train.monitor": "val_acc",
        "train.mode": "max"})
    t.callbacks.append(type("E", (Callback,), {"on_eval_end": lambda self, t, logs: rec.append(logs["val_acc"])})())
    summary = t.run()
    # an LR of 1e-9 moves nothing: the first evaluation is the best, two more without improvement stop it
    assert len(rec) == 3 and summary["steps"] == 3 * t.per_epoch < summary["total_steps"]
    assert summary["stop_reason"] == "early stopping: val_acc did not improve for 2 evaluations"


def test_snapshots_are_the_weights_at_each_cycle_end(tmp_path):
    rec = Record()
    t = trainer(tmp_path, lambda c, d: default_callbacks(c, d) + [rec], **{
        "schedule.name": "cyclic", "schedule.cycles": 3, "train.epochs": 3, "train.max_steps": 30, "train.snapshots": True})
    t.run()
    from coach.train import checkpoint as ckpt
    ends = [i + 1 for i in range(30) if (i + 1) % 10 == 0]  # cycle length 30 / 3
    for k, step in enumerate(ends, 1):
        snap = ckpt.load(tmp_path / "checkpoints" / "snapshots" / f"snapshot-{k}.pt")
        assert snap["step"] == step
        assert all(torch.equal(snap["model"][n], rec.after[step - 1][n]) for n in snap["model"])
    # at each cycle end the LR has annealed to (almost) zero; the next step restarts at the peak
    from coach.optim import lr_factor
    f = [lr_factor(t.cfg.schedule, s, 30, t.per_epoch) for s in range(30)]
    assert max(f[9], f[19], f[29]) < 0.05 and min(f[0], f[10], f[20]) > 0.95
    assert math.isclose(f[10], f[0])
