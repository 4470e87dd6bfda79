"""Planted faults: each must produce its finding code; a healthy setup must produce no warning."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import coach
from coach.babysit import check, diagnose_run, problems

ROOT = Path(__file__).resolve().parents[1]
BASE = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 64, "depth": 1},
        "optim": {"lr": 0.01}, "train": {"batch_size": 64, "progress": False, "monitor_every": 5}}


def cfg(**over):
    c = coach.make_config(BASE)
    return c.replace(**over) if over else c


def codes(findings, severities=("warning", "error")):
    return {f.code for f in findings if f.severity in severities}


@pytest.fixture(scope="module")
def healthy():
    return check(cfg(), probe_steps=60)


def test_healthy_check_has_no_warnings(healthy):
    assert healthy.healthy, [str(f) for f in healthy.findings]
    s = healthy.steps
    assert abs(s["initial_loss"]["loss"] - np.log(10)) < 0.5
    assert s["overfit"]["train_acc"] == 1.0 and s["gradcheck"]["verdict"] != "wrong"
    assert 1e-4 < s["lr_range"]["suggested_lr"] < 1.0
    assert [p["lr"] for p in s["lr_probe"]] == [0.1, 0.01, 0.001, 0.0001]


def test_lr_far_too_high():
    r = check(cfg(**{"optim.name": "sgd", "optim.lr": 1e4, "model.norm": "none"}), probe_steps=40)
    assert "lr_too_high" in codes(r.findings)


def test_lr_far_too_low():
    r = check(cfg(**{"optim.lr": 1e-8}), probe_steps=60)
    assert "lr_too_low" in codes(r.findings)


def test_small_init_in_deep_tanh_net_vanishes():
    r = check(cfg(**{"model.hidden": [256] * 6, "model.activation": "tanh", "model.init": "small",
                     "model.norm": "none"}), probe_steps=20)
    assert "init_vanishing" in codes(r.findings)


def test_very_large_init():
    tanh = check(cfg(**{"model.hidden": [256] * 4, "model.activation": "tanh", "model.init": "small",
                        "model.init_kwargs": {"std": 1.0}, "model.norm": "none"}), probe_steps=20)
    assert "saturation" in codes(tanh.findings)
    relu = check(cfg(**{"model.hidden": [256] * 4, "model.init": "small", "model.init_kwargs": {"std": 1.0},
                        "model.norm": "none"}), probe_steps=20)
    assert {"init_exploding", "initial_loss_mismatch"} <= codes(relu.findings)


def test_inputs_not_centred():
    r = check(cfg(**{"data.preprocess": "none"}), probe_steps=20)
    assert "data_not_normalized" in codes(r.findings)


def test_shuffled_labels(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    y = np.random.default_rng(0).permutation(d.target)
    np.savez(tmp_path / "shuffled.npz", x=d.images / 16.0, y=y)
    r = check(cfg(**{"data.name": "npz", "data.path": str(tmp_path / "shuffled.npz")}), probe_steps=100)
    assert "label_problem" in codes(r.findings)


def _train(tmp_path, **over):
    run = coach.fit(cfg(**over), run_dir=tmp_path / "run")
    return diagnose_run(run.dir)


def test_healthy_training_has_no_warnings(tmp_path):
    findings = _train(tmp_path, **{"train.epochs": 8})
    assert not problems(findings), [str(f) for f in findings]


def test_weight_decay_far_too_strong(tmp_path):
    findings = _train(tmp_path, **{"optim.weight_decay": 1.0, "model.norm": "none", "train.epochs": 6})
    assert "regularization_too_strong" in codes(findings)


def test_model_too_small(tmp_path):
    findings = _train(tmp_path, **{"model.width": 1, "model.norm": "none", "train.epochs": 8})
    assert "underfitting" in codes(findings)


def test_large_model_tiny_training_set(tmp_path):
    findings = _train(tmp_path, **{"data.limit": 40, "model.width": 512, "model.depth": 2, "train.epochs": 60,
                                   "train.batch_size": 20})
    assert "overfitting" in codes(findings)


def test_divergence_in_training(tmp_path):
    findings = _train(tmp_path, **{"optim.name": "sgd", "optim.lr": 1e12, "model.norm": "none",
                                   "train.max_rollbacks": 1, "train.max_nonfinite": 2})
    assert {"lr_too_high", "nonfinite"} <= codes(findings)


def test_cli_check_json_and_exit_codes():
    base = ["data.name=digits", "model.name=mlp", "model.width=32", "optim.lr=0.01", "train.batch_size=64"]
    p = subprocess.run([sys.executable, "-m", "coach", "check", "--json", "--probe-steps", "30", "--set", *base,
                        "data.preprocess=none"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    found = json.loads(p.stdout)
    assert any(f["code"] == "data_not_normalized" and f["evidence"] and f["advice"] for f in found)
    assert len({f["code"] for f in found}) == len(found)  # one finding per code
    p = subprocess.run([sys.executable, "-m", "coach", "check", "--probe-steps", "30", "--set", *base,
                        "data.preprocess=none"], cwd=ROOT, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    findings = lines[next(i for i, ln in enumerate(lines) if ln.startswith("6. ")) + 1:]  # after the step lines
    assert findings[0].startswith("fix first: data_not_normalized: ") and findings[-1] == "problems found"
    p = subprocess.run([sys.executable, "-m", "coach", "check", "--set", "model.init=nope"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "model.init" in p.stderr


def _image_folder(root):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(12):
            arr = (rng.random((10, 10, 3)) * 60 + 80 * c).astype(np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")


@pytest.mark.parametrize("source, model", [("mnist1d", "convnet"), ("digits", "resnet"), ("npz", "mlp"),
                                           ("image-folder", "convnet")])
def test_check_and_report_on_every_source_and_builder(tmp_path, source, model):
    over = {"data.name": source, "model.name": model, "model.width": 8, "train.epochs": 2,
            "optim.lr": 0.003}
    if source == "npz":
        x = np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)
        np.savez(tmp_path / "v.npz", x=x, y=(x[:, 0] > 0).astype(int))
        over["data.path"] = str(tmp_path / "v.npz")
    if source == "image-folder":
        _image_folder(tmp_path / "imgs")
        over.update({"data.path": str(tmp_path / "imgs"), "data.image_size": [8, 8], "train.batch_size": 8})
    c = cfg(**over)
    result = check(c, probe_steps=10, overfit_steps=60)
    assert {"data", "init", "initial_loss", "gradcheck", "overfit", "lr_range", "lr_probe"} <= set(result.steps)
    run = coach.fit(c, run_dir=tmp_path / "run")
    from coach.report import render_run
    assert render_run(run.dir).exists() and isinstance(diagnose_run(run.dir), list)


def test_an_lr_far_from_the_range_tests_suggestion_is_a_finding(monkeypatch):
    """`train --check` once said "No findings" while its own LR range test suggested 35x the LR."""
    from coach.babysit import checks
    c = cfg(**{"optim.lr": 1e-3})
    data = coach.load_data(c.data, 0)
    healthy = [{"lr": lr, "first": 2.3, "last": 1.0, "drops": True, "diverged": False, "val_acc": 0.8}
               for lr in (0.1, 0.01, 0.001, 0.0001)]
    monkeypatch.setattr(checks, "lr_probe", lambda *a, **k: healthy)
    for suggested, code in ((0.035, "lr_too_low"), (3e-5, "lr_too_high"), (0.004, None)):
        monkeypatch.setattr(checks, "lr_range_test", lambda *a, s=suggested, **k: {"suggested_lr": s})
        out = checks.CheckResult()
        checks.check_learning_rate(c, data, out, 10, 10)
        found = [f for f in out.findings if f.code in ("lr_too_low", "lr_too_high")]
        if code is None:
            assert found == []  # 4x is within the range test's precision
        else:
            assert [f.code for f in found] == [code] and found[0].severity == "info"
            assert "LR range test suggests optim.lr of about" in found[0].message


def initial_loss_step(setting):
    """Step 3 of the checklist alone, on a fresh 2-layer MLP with `setting`."""
    from coach.babysit.checks import CheckResult, check_initial_loss
    c = cfg(**{"model.depth": 2, **setting})
    data = coach.load_data(c.data, 0)
    torch.manual_seed(0)
    model = coach.build_model(c.model, data.input_shape, data.num_classes, c.regularize, data.preprocess,
                              batch=data.train.x[:256])
    out = CheckResult()
    return check_initial_loss(c, model, data, out), out


@pytest.mark.parametrize("setting, named, cut", [({"regularize.l2": 0.5}, "regularize.l2=0.5", "by about 1000x"),
                                                 ({"optim.weight_decay": 1.0}, "optim.weight_decay=1", "1000x"),
                                                 ({"regularize.dropout": 0.95}, "regularize.dropout=0.95",
                                                  "lower the drop probability")])
def test_regularization_that_multiplies_the_initial_loss_is_named(setting, named, cut):
    """The lectures' step: regularization off, the loss is log C; on, it goes up slightly. 2.3 -> 70 is a finding."""
    loss0, out = initial_loss_step(setting)
    assert abs(loss0 - np.log(10)) < 0.3  # "off" is measured without the noise: dropout off too
    found = [f for f in out.findings if f.code == "regularization_too_strong"]
    assert len(found) == 1 and named in found[0].message and cut in found[0].advice, [str(f) for f in out.findings]
    assert out.steps["initial_loss"]["with_regularization"] > 1.5 * loss0


@pytest.mark.parametrize("setting", [{}, {"regularize.dropout": 0.3}, {"regularize.l2": 1e-4},
                                     {"regularize.label_smoothing": 0.1},
                                     {"optim.name": "adamw", "optim.weight_decay": 1.0}])
def test_ordinary_regularization_raises_the_initial_loss_only_slightly(setting):
    loss0, out = initial_loss_step(setting)
    s = out.steps["initial_loss"]
    assert loss0 <= s["with_regularization"] < 1.5 * loss0 and out.findings == []
    expected = {} if not setting or "optim.name" in setting else \
        {"dropout" if "regularize.dropout" in setting else next(iter(setting))}
    assert set(s["regularization_terms"]) == set(expected)  # AdamW's decoupled decay is no loss term
