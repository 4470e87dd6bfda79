"""Ensembles, snapshots, EMA, TTA and transfer learning."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import coach
from coach.errors import UserError
from coach.evaluate import ensemble, evaluate_runs, freeze_batchnorm, predict_proba, recompute_bn, transfer, views
from coach.data.views import check_mode, trained_views

ROOT = Path(__file__).resolve().parents[1]
BASE = {"data": {"name": "digits"}, "model": {"name": "convnet", "width": 8, "depth": 1, "blocks": 1},
        "optim": {"lr": 0.01}, "train": {"epochs": 3, "batch_size": 64, "progress": False, "monitor_every": 0}}


def cfg(**over):
    c = coach.make_config(BASE)
    return c.replace(**over) if over else c


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits[: len(x)]


def test_ensemble_averages_probabilities_then_argmax():
    a = [[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    b = [[0.0, 2.5, 0.0], [0.0, 1.0, 0.0]]
    pa, pb = (predict_proba(Fixed(m), torch.zeros(2, 1)) for m in (a, b))
    by_hand = (torch.softmax(torch.tensor(a), 1) + torch.softmax(torch.tensor(b), 1)) / 2
    assert torch.allclose(ensemble([pa, pb]), by_hand)
    # sample 0: 0.5*(e^2/(e^2+2)) vs 0.5*(e^2.5/(e^2.5+2)) -> class 1 wins the average
    assert ensemble([pa, pb]).argmax(1).tolist() == [1, 2]


def test_tta_views_equal_explicit_crops():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    v = views(x, "crops", pad=1)
    big = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)  # the image seen closer
    explicit = [big[..., 0:6, 0:6], big[..., 0:6, 2:8], big[..., 2:8, 0:6], big[..., 2:8, 2:8], big[..., 1:7, 1:7]]
    assert len(v) == 5 and all(torch.equal(a, b) for a, b in zip(v, explicit))
    # every view is image content: no zero padding creeps in (the image's values are all >= 0,
    # and its zero is only at one corner pixel of the first image)
    assert all((t[1] > 0).all() for t in v)
    v10 = views(x, "crops-flip", pad=1)
    assert len(v10) == 10 and all(torch.equal(a, b.flip(-1)) for a, b in zip(v10[5:], explicit))
    assert torch.equal(views(x, "flip")[1], x.flip(-1))
    ms = views(x, "multiscale")
    assert len(ms) == 3 and all(m.shape == x.shape for m in ms) and torch.allclose(ms[1], x)
    s = torch.arange(40.0).view(1, 1, 40)
    assert [int(t[0, 0, 0]) for t in views(s, "shift")] == [2, 1, 0, 39, 38]


def test_translations_are_the_views_padded_crops_train_on():
    x = torch.arange(1 * 1 * 6 * 6, dtype=torch.float32).view(1, 1, 6, 6) + 1
    v = views(x, "translate", pad=2)  # moves of 1 px
    assert len(v) == 5 and torch.equal(v[0], x)
    assert torch.equal(v[2][..., :-1, :], x[..., 1:, :]) and (v[2][..., -1, :] == 0).all()  # moved up, zero-filled
    assert torch.equal(v[4][..., :, :-1], x[..., :, 1:])  # moved left
    assert len(views(x, "translate-flip", pad=2)) == 10


def test_trained_views_never_mirror_a_model_not_trained_with_flips():
    assert trained_views("image") == []
    assert trained_views("image", crop_padding=2) == ["translate"]
    assert trained_views("image", resized_crop=True) == ["crops"]
    assert trained_views("image", hflip=True, crop_padding=2) == ["flip", "translate", "translate-flip"]
    assert trained_views("signal", shift=2) == ["shift"] and trained_views("signal") == []
    assert trained_views("vector", hflip=True) == []


def test_tta_mode_must_fit_the_data():
    with pytest.raises(UserError, match="--tta crops: needs images; this data is signal"):
        check_mode("crops", "signal")
    with pytest.raises(UserError, match="--tta shift"):
        check_mode("shift", "image")


def test_recompute_bn_matches_data_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3))
    x = torch.randn(1000, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([5.0, -1.0, 0.5])
    recompute_bn(model, x, batch_size=100)
    assert torch.allclose(model[0].running_mean, x.mean(0), atol=1e-4)
    assert torch.allclose(model[0].running_var, x.var(0), rtol=1e-2)


def test_frozen_batchnorm_uses_running_statistics():
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(2.0)
    frozen = freeze_batchnorm(nn.Sequential(bn))[0]
    frozen.train()
    x = torch.randn(8, 3)
    assert torch.allclose(frozen(x), (x - 2.0) / torch.sqrt(torch.tensor(1.0 + 1e-5)))
    assert frozen.running_mean.eq(2.0).all()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    dirs = []
    for seed in (0, 1):
        dirs.append(coach.fit(cfg(seed=seed, **{"train.ema": 0.9}), run_dir=root / f"s{seed}").dir)
    snap = coach.fit(cfg(**{"schedule.name": "cyclic", "schedule.cycles": 3, "train.snapshots": True,
                            "train.epochs": 6}), run_dir=root / "snap").dir
    return dirs, snap


def test_evaluate_runs_ensemble_ema_snapshots(runs):
    dirs, snap = runs
    result = evaluate_runs(dirs + [snap], tta="flip", use_ensemble=True)
    names = [r["name"] for r in result["rows"]]
    assert any("EMA weights" in n for n in names) and any("snapshot ensemble of 3" in n for n in names)
    assert names[-1] == "ensemble of 3 runs" and any(r["tta"] == "flip" for r in result["rows"])
    assert all(0 <= r["acc"] <= 1 for r in result["rows"])
    assert (Path(dirs[0]) / "evaluation-val.json").exists()
    data = coach.load_data(cfg().data)
    by_hand = ensemble(predict_proba(coach.Run.open(d).load_model("best"), data.val.x) for d in dirs + [snap])
    ens = next(r for r in result["rows"] if r["name"].startswith("ensemble"))
    assert ens["acc"] == pytest.approx((by_hand.argmax(1) == data.val.y).float().mean().item())


def test_ensemble_rejects_runs_on_different_data(runs, tmp_path):
    other = coach.fit(cfg(**{"data.classes": [0, 1, 2]}), run_dir=tmp_path / "other").dir
    with pytest.raises(UserError, match="different data or class counts"):
        evaluate_runs([runs[0][0], other], use_ensemble=True)


def test_transfer_linear_keeps_frozen_weights_bit_identical(tmp_path):
    source = coach.fit(cfg(**{"data.classes": [0, 1, 2, 3, 4], "train.epochs": 4}), run_dir=tmp_path / "src")
    before = load_file(str(source.dir / "weights" / "best.safetensors"))
    target = cfg(**{"data.classes": [5, 6, 7, 8, 9], "data.per_class": 20, "train.epochs": 40, "optim.lr": 0.03})
    run = transfer(source.dir, target, mode="linear", run_dir=tmp_path / "lin")
    after = load_file(str(run.dir / "weights" / "final.safetensors"))
    frozen = [k for k in before if not k.startswith("head.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # incl. batch-norm statistics
    assert after["head.weight"].shape[0] == 5 and run.summary["final"]["val_acc"] > 0.5
    assert coach.Run.open(run.dir).load_model("best") is not None  # the run directory rebuilds


def test_transfer_groups_give_the_backbone_a_tenth_of_the_head_lr(tmp_path):
    from coach.evaluate.transfer import prepare
    from coach.train.loop import Trainer
    source = coach.fit(cfg(**{"train.epochs": 1}), run_dir=tmp_path / "src")
    model = coach.Run.open(source.dir).load_model("best").train()
    groups, extra = prepare(model, "finetune-all", gradual=False, freeze_bn=False, weight_decay=0.0, num_classes=5)
    assert extra == [] and [g["lr_mult"] for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.features.parameters()}
    c = cfg(**{"optim.name": "sgd", "optim.lr": 0.2, "model.norm": "batch"})
    t = Trainer(c, coach.load_data(c.data, 0), model, tmp_path / "t", torch.device("cpu"), [], groups)
    t.set_lr()
    assert [g["lr"] for g in t.opt.param_groups] == pytest.approx([0.2, 0.02])


def test_gradual_unfreezing_goes_from_the_top_one_block_per_epoch(tmp_path):
    from coach.evaluate.transfer import blocks
    deep = {"model.depth": 2, "model.blocks": 2}  # 4 conv blocks
    source = coach.fit(cfg(**{**deep, "train.epochs": 1}), run_dir=tmp_path / "src")
    before = load_file(str(source.dir / "weights" / "best.safetensors"))
    assert len(blocks(coach.Run.open(source.dir).load_model("best"))) == 4
    target = cfg(**{**deep, "data.classes": [5, 6, 7, 8, 9], "train.epochs": 3})
    run = transfer(source.dir, target, mode="finetune-all", run_dir=tmp_path / "ft", gradual=True, freeze_bn=True)
    after = load_file(str(run.dir / "weights" / "final.safetensors"))
    convs = sorted({int(k.split(".")[1]) for k in before if k.startswith("features.") and before[k].dim() == 4})

    def block(i):  # the conv's tensors and those of the batch norm after it
        return [k for k in before if k.startswith("features.") and int(k.split(".")[1]) in (convs[i], convs[i] + 1)]

    changed = [any(not torch.equal(before[k], after[k]) for k in block(i) if "running" not in k) for i in range(4)]
    # epoch 1: head only; after it the top block thaws (trains epochs 2-3); after epoch 2 the next one
    # (trains epoch 3); the third thaws after the last epoch and the bottom never does
    assert changed == [False, False, True, True]
    stats = [k for k in before if "running_" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)  # freeze_bn: statistics kept


def test_auto_decides_by_similarity_when_data_is_plentiful(tmp_path):
    """The lectures' 2x2 table: with lots of data, similar data fine-tunes the top, different data all."""
    import dataclasses

    from coach.evaluate.transfer import choose_mode, load_source
    source = coach.fit(cfg(**{"train.epochs": 6}), run_dir=tmp_path / "src")
    target = cfg()
    data = coach.load_data(target.data, 0)
    model, _ = load_source(source.dir, source.config, data)
    mode, why = choose_mode(model, target, data, little_per_class=50)  # digits: ~130 per class = "lots"
    assert mode == "finetune-top" and "(similar data" in why
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))  # scrambled pixels: another domain

    def scramble(split):
        return dataclasses.replace(split, x=split.x.flatten(1)[:, perm].view_as(split.x))

    other = dataclasses.replace(data, train=scramble(data.train), val=scramble(data.val))
    model, _ = load_source(source.dir, source.config, other)
    mode, why = choose_mode(model, target, other, little_per_class=50)
    assert mode == "finetune-all" and "(different data" in why
    mode, why = choose_mode(model, target, other)  # 130 per class is "little" at the default line of 200
    assert mode == "linear" and "little" in why


def test_finetune_top_trains_the_top_conv_block_and_nothing_below(tmp_path):
    from coach.evaluate.transfer import blocks
    deep = {"model.depth": 2, "model.blocks": 2}  # 4 convs, each with its batch norm
    source = coach.fit(cfg(**{**deep, "data.classes": [0, 1, 2, 3, 4], "train.epochs": 1}), run_dir=tmp_path / "src")
    model = coach.Run.open(source.dir).load_model("best")
    bs = blocks(model)
    assert len(bs) == 4 and all(isinstance(b[0], torch.nn.Conv2d) and isinstance(b[1], torch.nn.BatchNorm2d)
                                for b in bs)  # a block is a conv with its norm, never a norm alone
    before = load_file(str(source.dir / "weights" / "best.safetensors"))
    target = cfg(**{**deep, "data.classes": [5, 6, 7, 8, 9], "data.per_class": 20, "train.epochs": 2})
    run = transfer(source.dir, target, mode="finetune-top", run_dir=tmp_path / "top")
    after = load_file(str(run.dir / "weights" / "final.safetensors"))
    convs = [k for k in before if k.startswith("features.") and k.endswith(".weight") and before[k].dim() == 4]
    top_conv = max(convs, key=lambda k: int(k.split(".")[1]))  # safetensors keys come sorted as text
    assert not torch.equal(before[top_conv], after[top_conv])  # the top conv itself trained, not only a BN
    lower = [k for k in before if k.startswith("features.") and int(k.split(".")[1]) < int(top_conv.split(".")[1])]
    assert lower and all(torch.equal(before[k], after[k]) for k in lower)


def test_transfer_from_state_dict_reports_keys(tmp_path):
    source = coach.fit(cfg(**{"data.classes": [0, 1, 2, 3, 4], "train.epochs": 1}), run_dir=tmp_path / "src")
    state = load_file(str(source.dir / "weights" / "best.safetensors"))
    torch.save(state, tmp_path / "plain.pt")
    target = cfg(**{"data.classes": [5, 6, 7], "train.epochs": 1})
    run = transfer(tmp_path / "plain.pt", target, mode="linear", run_dir=tmp_path / "t")
    import json
    report = json.loads((run.dir / "transfer.json").read_text())
    assert report["matched"] > 0 and report["missing"] == [] and report["mode"] == "linear"
    with pytest.raises(UserError, match="incompatible weights"):
        transfer(tmp_path / "plain.pt", cfg(**{"model.name": "mlp", "model.blocks": 2}), mode="linear",
                 run_dir=tmp_path / "bad")


def test_cli_evaluate_zoo(runs, tmp_path):
    dirs, _ = runs
    p = subprocess.run([sys.executable, "-m", "coach", "evaluate", *map(str, dirs), "--ensemble", "--tta", "crops"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "ensemble of 2 runs" in p.stdout, p.stderr
    p = subprocess.run([sys.executable, "-m", "coach", "evaluate", str(dirs[0]), "--tta", "shift"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "shift" in p.stderr
    p = subprocess.run([sys.executable, "-m", "coach", "zoo", str(Path(dirs[0]).parent)], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0 and "digits" in p.stdout


def test_tta_averages_the_probabilities_of_every_view():
    """What test-time augmentation returns is the mean of the model's probabilities over the views
    (an average of the identity view alone would equal plain prediction)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(4, 1, 6, 6)
    for mode in ("flip", "translate", "crops", "multiscale"):
        by_hand = torch.stack([F.softmax(model(v), 1) for v in views(x, mode, pad=2)]).mean(0)
        got = predict_proba(model, x, mode, pad=2)
        assert torch.allclose(got, by_hand, atol=1e-6), mode
        assert not torch.allclose(got, predict_proba(model, x), atol=1e-3), mode
