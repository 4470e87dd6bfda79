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
from tests.conftest import side_by_side

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
    coach_check = [sys.executable, "-m", "coach", "check"]
    p, text, refused = side_by_side(coach_check + ["--json", "--probe-steps", "30", "--set", *base, "data.preprocess=none"],
                                    coach_check + ["--probe-steps", "30", "--set", *base, "data.preprocess=none"],
                                    coach_check + ["--set", "model.init=nope"], cwd=ROOT)
    assert p.returncode == 1, p.stderr
    found = json.loads(p.stdout)
    assert any(f["code"] == "data_not_normalized" and f["evidence"] and f["advice"] for f in found)
    assert len({f["code"] for f in found}) == len(found)  # one finding per code
    lines = text.stdout.splitlines()
    findings = lines[next(i for i, ln in enumerate(lines) if ln.startswith("6. ")) + 1:]  # after the step lines
    assert findings[0].startswith("fix first: data_not_normalized: ") and findings[-1] == "problems found"
    assert refused.returncode == 2 and "model.init" in refused.stderr


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
    from coach.babysit.checks import lr as checks
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


# --------------------------------------------------------------------------------------------------
# Babysitter 2: a cause is claimed only with its own evidence (the differential diagnosis)
DEEP = {"model.hidden": [64] * 6, "model.norm": "none", "model.init": "small", "optim.lr": 1e-3}


@pytest.mark.parametrize("activation, std, cause", [("relu", 0.01, "init_vanishing"), ("tanh", 0.01, "init_vanishing"),
                                                   ("relu", 1.0, "init_exploding"), ("tanh", 1.0, "saturation")])
def test_a_badly_scaled_init_is_not_called_a_wrong_backward_pass(activation, std, cause):
    """The issue's false cause: the gradient check fails at a saturated, exploding or vanishing
    init (kinks crossed, digits lost to round-off), though autograd is right. Re-checked on a
    rescaled copy, it is `gradient_check_inconclusive` at most, and the init finding stays."""
    r = check(cfg(**DEEP, **{"model.activation": activation, "model.init_kwargs": {"std": std}}), probe_steps=30)
    assert cause in codes(r.findings) and "gradient_check_failed" not in codes(r.findings, ("info", "warning", "error"))
    assert "overfit" in r.steps  # the checklist went on past step 4
    g = r.steps["gradcheck"]
    if "rescaled" in g:  # it failed or judged nothing at the configured scale: the copy decided
        assert g["rescaled"]["verdict"] != "wrong" and "gradient_check_inconclusive" in codes(r.findings, ("info",))


def test_std_001_relu_crosses_kinks_that_the_gradient_check_excludes():
    """The lectures' kinks: at std 0.01 the deep layers' pre-activations are ~1e-8, so a step of
    h = 1e-6 crosses ReLU kinks; those entries are counted, not judged."""
    c = cfg(**DEEP, **{"model.init_kwargs": {"std": 0.01}})
    data = coach.load_data(c.data, 0)
    torch.manual_seed(0)
    model = coach.build_model(c.model, data.input_shape, 10, c.regularize, data.preprocess)
    result = coach.gradcheck(model, data.train.x[:4], data.train.y[:4], per_param=4)
    assert sum(p.kink for p in result.params) > 0
    assert max(p.raw_max_rel_error for p in result.params) > 1e-2  # judged naively: "wrong"
    assert result.passed


def test_a_kink_inside_the_step_is_excluded_and_a_real_bug_still_fails():
    from torch import nn
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-1.0 + 1e-7)  # pre-activation 1e-7 at x = 1: a bias step of 1e-6 crosses 0
        net[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    result = coach.gradcheck(net, torch.ones(1, 1), torch.tensor([0]), per_param=1)
    bias = next(p for p in result.params if p.name == "0.bias")
    assert bias.kink == 1 and bias.judged == 0 and bias.raw_max_rel_error > 0.1 and result.inconclusive


def test_a_wrong_backward_pass_is_still_found_after_the_rescaled_recheck(monkeypatch):
    import importlib.util

    from coach.config import ACTIVATIONS
    monkeypatch.setattr(ACTIVATIONS, "_items", dict(ACTIVATIONS._items))  # the registration ends with the test
    spec = importlib.util.spec_from_file_location("planted", ROOT / "bench" / "planted.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the wrong_tanh activation
    r = check(cfg(**{"model.activation": "wrong_tanh", "model.init": "xavier"}), probe_steps=20)
    assert codes(r.findings) == {"gradient_check_failed"}
    assert r.steps["gradcheck"]["rescaled"]["verdict"] == "wrong"


def test_overfit_step_with_regularization_off_names_the_setting_and_the_cut():
    """Dropout 0.95 barely moves the initial loss; step 5 shows it: on, the model cannot memorize
    100 examples; off, it does; so the setting is named, with the cut that lets it memorize."""
    r = check(cfg(**{"model.depth": 2, "regularize.dropout": 0.95, "optim.lr": 1e-3}), probe_steps=30)
    assert codes(r.findings) == {"regularization_too_strong"}, [str(f) for f in r.findings]
    f = next(f for f in r.findings if f.code == "regularization_too_strong")
    # one finding: step 3's measurement (if it saw the term) and step 5's merged into it
    step5 = next(e for e in [f.evidence, *f.evidence.get("also", [])] if e.get("step") == "overfit")
    assert step5["settings"] == {"regularize.dropout": 0.95} and step5["cut_by"] in (10, 100)
    assert r.steps["overfit"]["regularization_off"]["train_acc"] == 1.0 and r.steps["overfit"]["train_acc"] < 0.5


def test_ordinary_regularization_that_slows_memorizing_is_not_too_strong():
    """Spatial dropout 0.3 on a 1-D convnet needs more steps to memorize than without it; given
    3x the unregularized copy's steps it does, so no finding."""
    c = coach.make_config({"data": {"name": "mnist1d", "limit": 3000}, "train": {"batch_size": 64},
                           "model": {"name": "convnet", "width": 16, "blocks": 1},
                           "regularize": {"spatial_dropout": 0.3}})
    r = check(c, probe_steps=30)
    assert "regularization_too_strong" not in codes(r.findings), [str(f) for f in r.findings]
    assert r.steps["overfit"]["train_acc"] == 1.0


def test_a_tiny_model_is_capacity_not_labels():
    r = check(cfg(**{"model.hidden": [2], "model.norm": "none", "optim.lr": 1e-3}), probe_steps=60)
    assert codes(r.findings) == {"cannot_overfit"}, [str(f) for f in r.findings]
    f = r.findings[0]
    assert f.evidence["capacity"] and f.evidence["wider"]["hidden"] == [64] and "model.hidden=[64]" in f.advice


def test_unnormalized_inputs_explain_the_init_symptoms_and_are_not_labels(tmp_path):
    """Inputs at mean 100: dead ReLUs, a wrong initial loss, no memorizing and chance-level
    validation all follow from them; with standardized inputs none of it happens, so one
    finding names the cause and carries the rest as evidence."""
    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez(tmp_path / "off.npz", x=100 + 0.1 * (d.images - d.images.mean()) / d.images.std(), y=d.target)
    r = check(cfg(**{"data.name": "npz", "data.path": str(tmp_path / "off.npz"), "data.preprocess": "none", "model.depth": 3,
                     "model.norm": "none", "optim.lr": 1e-3}), probe_steps=60)
    assert codes(r.findings) == {"data_not_normalized"}, [str(f) for f in r.findings]
    explained = {e["code"] for e in r.findings[0].evidence["explains"]}
    assert {"dead_relu", "initial_loss_mismatch", "cannot_overfit"} <= explained


def test_shuffled_labels_are_named_against_a_shuffled_control(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez(tmp_path / "shuffled.npz", x=d.images / 16.0, y=np.random.default_rng(0).permutation(d.target))
    r = check(cfg(**{"data.name": "npz", "data.path": str(tmp_path / "shuffled.npz"), "optim.lr": 1e-3}))
    assert codes(r.findings) == {"label_problem"}, [str(f) for f in r.findings]
    real, shuffled = r.steps["label_control"]["real"], r.steps["label_control"]["shuffled"]
    assert real[0] - real[1] < 1.5 * (shuffled[0] - shuffled[1]) + 0.1  # no faster than the control


def test_a_slowly_memorizing_model_gets_more_steps_not_a_verdict():
    """A 1-D convnet at Adam 1e-3 takes ~500 steps to memorize 100 MNIST-1D examples: a loss still
    falling at 300 steps is given more (up to 4x), not called a low LR."""
    c = coach.make_config({"data": {"name": "mnist1d", "limit": 3000}, "train": {"batch_size": 64},
                           "model": {"name": "convnet", "width": 16, "blocks": 1}})
    r = check(c, probe_steps=30)
    assert not problems(r.findings), [str(f) for f in r.findings]
    assert 300 < r.steps["overfit"]["steps"] <= 1200 and r.steps["overfit"]["train_acc"] == 1.0


def test_planted_fault_benchmark_on_the_digits_mlp(tmp_path):
    """bench/planted.py's MLP cases (15 faults, 5 healthy setups) through the script itself: every
    fault named, no claim outside a case's acceptable causes, no alarm on a healthy setup."""
    out = tmp_path / "planted.json"
    p = subprocess.run([sys.executable, "bench/planted.py", "--only", "digits/mlp/", "--json", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())
    broken = [r for r in rows if r["acceptable"]]
    assert len(broken) == 15 and len(rows) - len(broken) == 5
    assert all(r["right"] for r in broken), [r["case"] for r in broken if not r["right"]]
    assert all(set(r["claims"]) <= set(r["acceptable"]) for r in rows), [(r["case"], r["claims"]) for r in rows]
    assert "recall     15/15 = 100.0%" in p.stdout and "false alarms on healthy setups: 0/5" in p.stdout


def test_regularization_off_leaves_batch_norm_inside_a_stochastic_depth_branch_alone():
    """Regularization "off" turns the drop off, not the branch's batch norms: a ResNet with stochastic depth
    measures the same initial loss and activations as the same weights without it (it read
    3.98 against 2.92, from batch norms on their untrained running statistics)."""
    from coach.babysit.checks import CheckResult, check_initial_loss
    base = {"data.name": "digits", "model.name": "resnet", "model.width": 16, "model.blocks": 2}
    losses, stds = [], []
    for sd in (0.0, 0.5):
        c = cfg(**base, **{"regularize.stochastic_depth": sd})
        data = coach.load_data(c.data, 0)
        torch.manual_seed(0)
        model = coach.build_model(c.model, data.input_shape, 10, c.regularize, data.preprocess)
        losses.append(check_initial_loss(c, model, data, CheckResult()))
        stds.append(coach.init_report(model, data.train.x[:256]).stds())
    assert abs(losses[0] - losses[1]) < 1e-5 and np.allclose(stds[0], stds[1], rtol=1e-5), (losses, stds)


def test_without_controls_step_5_is_one_bounded_run_with_regularization_off():
    """The autopilot's version: its time share bounds the steps, so no control models."""
    r = check(cfg(**{"model.hidden": [2], "model.norm": "none", "regularize.dropout": 0.5, "optim.lr": 1e-3}),
              probe_steps=20, overfit_steps=60, controls=False)
    o = r.steps["overfit"]
    assert not o["regularized"] and o["steps"] <= 60 and "regularization_off" not in o
    f = next(f for f in r.findings if f.code == "cannot_overfit")
    assert "wider" not in f.evidence and not f.evidence["capacity"]


def test_without_controls_a_loss_still_falling_when_the_steps_run_out_is_no_verdict():
    """A time budget's few steps on a healthy model: still learning is not a fault (a 10-minute
    session's checks called 97% after 39 steps "stopped")."""
    r = check(cfg(), probe_steps=10, overfit_steps=15, controls=False)
    o = r.steps["overfit"]
    assert not o["memorized"] and "still falling" in o["inconclusive"], o
    assert not [f for f in r.findings if f.code in ("cannot_overfit", "lr_too_low")]
