"""The curve diagnosis, rule by rule, on synthetic metrics and monitors whose answer is known;
then planted cases on real models for the codes no other test produces."""
import math

import numpy as np
import torch

import coach
from coach.babysit import diagnose
from coach.babysit.checks import CheckResult, check_data, check_init

CFG = coach.make_config({"data": {"name": "digits"}, "optim": {"lr": 0.01}})


def evals(train_acc, val_acc, train_loss=None, val_loss=None):
    n = len(train_acc)
    train_loss = train_loss or [1.0 / (i + 1) for i in range(n)]
    val_loss = val_loss or [1.0 / (i + 1) + 0.05 for i in range(n)]
    return [{"type": "eval", "step": 10 * (i + 1), "train_acc": a, "val_acc": v, "train_loss": tl, "val_loss": vl}
            for i, (a, v, tl, vl) in enumerate(zip(train_acc, val_acc, train_loss, val_loss))]


def steps(losses):
    return [{"type": "step", "step": i + 1, "loss": x} for i, x in enumerate(losses)]


def monitor(update_ratio=1e-3, weight_norm=1.0, dead=0.0, saturated=None, step=10):
    return {"step": step, "layers": {"fc": {"update_ratio": update_ratio, "grad_norm": 0.1, "weight_norm": weight_norm}},
            "acts": {"act1": {"dead": dead, "saturated": saturated}}}


HEALTHY_STEPS = steps([2.3 * math.exp(-i / 30) + 0.1 for i in range(100)])
HEALTHY_EVALS = evals([0.5, 0.7, 0.8, 0.85, 0.9, 0.92], [0.48, 0.68, 0.78, 0.83, 0.88, 0.91])


def found(cfg=CFG, metrics=(), summary=None, monitors=None, classes=10, info=True):
    return {f.code: f for f in diagnose(cfg, list(metrics), summary, monitors, classes)
            if info or f.severity != "info"}


def test_healthy_curves_give_no_finding():
    assert found(metrics=HEALTHY_STEPS + HEALTHY_EVALS, monitors=[monitor(), monitor(step=20)]) == {}


def test_loss_ending_above_its_start_is_lr_too_high():
    f = found(metrics=steps([2.3] * 50 + [2.6] * 50))
    assert set(f) == {"lr_too_high"} and "2.3 -> 2.6" in f["lr_too_high"].message


def test_a_blow_up_the_run_survived_is_lr_too_high():
    """The loss shoots to 1e4 and comes back to log C (the units died): nothing ends above its
    start, yet the curve says the LR is far too high."""
    losses = [2.3] * 10 + [1e4] * 10 + [2.31] * 80
    f = found(metrics=steps(losses))
    assert set(f) == {"lr_too_high"} and "blew up to 1e+04" in f["lr_too_high"].message
    assert f["lr_too_high"].evidence["peak_step"] == 11
    assert "lr_too_high" not in found(metrics=steps([2.3] * 10 + [3.0] * 10 + [1.0] * 80))  # a bump is no blow-up


def test_update_ratios_far_above_1e_3_are_lr_too_high():
    f = found(metrics=HEALTHY_STEPS, monitors=[monitor(update_ratio=0.5), monitor(update_ratio=0.5)])
    assert set(f) == {"lr_too_high"} and f["lr_too_high"].evidence["median_update_ratio"] == 0.5
    assert found(metrics=HEALTHY_STEPS, monitors=[monitor(update_ratio=0.05)] * 2) == {}  # below the line


def test_flat_loss_with_tiny_updates_is_lr_too_low():
    f = found(metrics=steps([2.30 - 0.0001 * i for i in range(100)]), monitors=[monitor(update_ratio=1e-7)] * 2)
    assert set(f) == {"lr_too_low"}
    # the same flat loss with healthy update sizes is not the LR's fault
    assert "lr_too_low" not in found(metrics=steps([2.30 - 0.0001 * i for i in range(100)]),
                                     monitors=[monitor(update_ratio=1e-3)] * 2)


def test_divergence_and_skipped_steps():
    f = found(summary={"status": "diverged", "stop_reason": "diverged: ...", "skipped_steps": 6, "rollbacks": 2})
    assert set(f) == {"lr_too_high", "nonfinite"} and f["nonfinite"].severity == "error"
    f = found(summary={"status": "completed", "skipped_steps": 2, "rollbacks": 0})
    assert set(f) == {"nonfinite"} and f["nonfinite"].severity == "warning"


def test_train_fits_while_validation_stays_at_chance_is_a_label_problem():
    f = found(metrics=evals([0.3, 0.6, 0.9], [0.11, 0.1, 0.09]))
    assert set(f) == {"label_problem"} and f["label_problem"].severity == "error"


def test_a_growing_gap_is_overfitting():
    f = found(metrics=evals([0.8, 0.9, 0.97, 1.0], [0.78, 0.82, 0.83, 0.83]))
    assert set(f) == {"overfitting"}
    # validation loss rising while training loss falls, with a moderate gap
    f = found(metrics=evals([0.8, 0.85, 0.9, 0.93], [0.79, 0.84, 0.86, 0.86], train_loss=[0.6, 0.4, 0.3, 0.2],
                            val_loss=[0.6, 0.45, 0.5, 0.6]))
    assert set(f) == {"overfitting"} and "rising" in f["overfitting"].message


def test_low_flat_training_accuracy_is_underfitting_or_too_much_regularization():
    flat = evals([0.40, 0.45, 0.46, 0.46, 0.46, 0.46], [0.39, 0.44, 0.45, 0.45, 0.45, 0.45])
    assert set(found(metrics=flat, info=False)) == {"underfitting"}
    strong = CFG.replace(**{"regularize.l2": 0.1})
    f = found(strong, metrics=flat, info=False)
    assert set(f) == {"regularization_too_strong"} and "regularize.l2=0.1" in f["regularization_too_strong"].message
    shrinking = [monitor(weight_norm=1.0), monitor(weight_norm=0.3, step=20)]
    f = found(metrics=flat, monitors=shrinking, info=False)
    assert set(f) == {"regularization_too_strong"} and "shrank to 30%" in f["regularization_too_strong"].message
    still_rising = evals([0.2, 0.3, 0.4, 0.5, 0.6, 0.7], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert found(metrics=still_rising) == {}  # a short run still improving is not underfitting yet


def test_no_improvement_at_a_constant_lr_is_a_plateau():
    acc = [0.6, 0.8, 0.9, 0.93, 0.92, 0.925, 0.92]
    f = found(metrics=evals([a + 0.02 for a in acc], acc))
    assert set(f) == {"plateau"} and f["plateau"].evidence["best_eval"] == 3
    assert found(CFG.replace(**{"schedule.name": "cosine"}), metrics=evals([a + 0.02 for a in acc], acc)) == {}
    assert found(metrics=evals([a + 0.02 for a in acc[:6]], acc[:6])) == {}  # 2 evaluations is not yet stuck


def test_flat_start_then_a_fall_is_bad_init():
    f = found(metrics=steps([2.3026] * 30 + [2.3026 - 0.05 * i for i in range(1, 31)]))
    assert set(f) == {"bad_init"}
    assert "bad_init" not in found(metrics=HEALTHY_STEPS)


def test_dead_and_saturated_units_from_the_monitors():
    f = found(monitors=[monitor(dead=0.8, saturated=None)])
    assert set(f) == {"dead_relu"} and "80%" in f["dead_relu"].message
    f = found(monitors=[monitor(dead=0.0, saturated=0.9)])
    assert set(f) == {"saturation"}
    assert found(monitors=[monitor(dead=0.4, saturated=0.4)]) == {}


# --------------------------------------------------------------- planted, real models
def test_planted_dead_relus_are_found_at_initialization():
    data = coach.load_data(CFG.data, 0)
    model = coach.build_model(CFG.model.model_copy(update={"name": "mlp", "width": 32, "depth": 2, "norm": "none"}),
                              data.input_shape, data.num_classes, CFG.regularize, data.preprocess)
    out = CheckResult()
    check_init(model, data.train.x[:256], out)
    assert "dead_relu" not in {f.code for f in out.findings}
    with torch.no_grad():
        linear = [m for m in model.features.modules() if isinstance(m, torch.nn.Linear)][0]
        linear.bias.fill_(-100.0)  # every unit of the first layer is off for every input
    out = CheckResult()
    check_init(model, data.train.x[:256], out)
    dead = [f for f in out.findings if f.code == "dead_relu"]
    assert dead and "100%" in dead[0].message


def test_planted_class_imbalance_is_found(tmp_path):
    rng = np.random.default_rng(0)
    counts = [400, 40, 40]
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = rng.normal(size=(len(y), 5)).astype(np.float32) + y[:, None]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    c = coach.make_config({"data": {"name": "npz", "path": str(tmp_path / "d.npz")}})
    data = coach.load_data(c.data, 0)
    model = coach.build_model(c.model.model_copy(update={"name": "mlp"}), data.input_shape, data.num_classes,
                              c.regularize, data.preprocess)
    out = CheckResult()
    check_data(data, model, out)
    f = [f for f in out.findings if f.code == "class_imbalance"]
    assert f and f[0].evidence["class_counts"][0] > 5 * f[0].evidence["class_counts"][1]
    y = np.repeat([0, 1, 2], 160)
    np.savez(tmp_path / "b.npz", x=rng.normal(size=(len(y), 5)).astype(np.float32), y=y)
    data = coach.load_data(c.data.model_copy(update={"path": str(tmp_path / "b.npz")}), 0)
    out = CheckResult()
    check_data(data, model, out)
    assert "class_imbalance" not in {f.code for f in out.findings}


def test_planted_saturating_tanh_net_is_found_by_the_training_monitors(tmp_path):
    from coach.babysit import diagnose_run
    c = CFG.replace(**{"model.name": "mlp", "model.width": 64, "model.depth": 2, "model.activation": "tanh",
                       "model.norm": "none", "model.init": "small", "model.init_kwargs": {"std": 1.0}, "train.epochs": 1,
                       "train.monitor_every": 5, "train.progress": False})
    coach.fit(c, run_dir=tmp_path / "r")
    assert "saturation" in {f.code for f in diagnose_run(tmp_path / "r")}
    c = c.replace(**{"model.init": "xavier", "model.init_kwargs": {}})
    coach.fit(c, run_dir=tmp_path / "ok")
    assert "saturation" not in {f.code for f in diagnose_run(tmp_path / "ok")}


def test_planted_plateau_and_bad_init_on_real_runs(tmp_path):
    from coach.babysit import diagnose_run
    base = coach.make_config({"data": {"name": "digits"}, "model": {"name": "mlp", "width": 64},
                              "train": {"batch_size": 64, "progress": False, "monitor_every": 0, "log_every": 5}})
    # a constant LR for 25 epochs: validation stops improving long before the end
    coach.fit(base.replace(**{"optim.lr": 0.03, "train.epochs": 25}), run_dir=tmp_path / "flat")
    assert "plateau" in {f.code for f in diagnose_run(tmp_path / "flat")}
    coach.fit(base.replace(**{"optim.lr": 0.03, "train.epochs": 25, "schedule.name": "cosine"}),
              run_dir=tmp_path / "cos")
    assert "plateau" not in {f.code for f in diagnose_run(tmp_path / "cos")}
    # a deep ReLU net initialized at std 0.01: the signal vanishes, the loss sits at log(10), then falls
    coach.fit(base.replace(**{"model.depth": 5, "model.norm": "none", "model.init": "small", "optim.lr": 1e-3,
                              "model.init_kwargs": {"std": 0.01}, "train.epochs": 8}), run_dir=tmp_path / "init")
    assert "bad_init" in {f.code for f in diagnose_run(tmp_path / "init")}
    assert "bad_init" not in {f.code for f in diagnose_run(tmp_path / "flat")}


def test_one_finding_per_code_most_severe_first():
    from coach.babysit.findings import Finding, merged
    a = Finding("lr_too_high", "warning", "updates are large", "lower it", {"ratio": 0.5})
    b = Finding("nonfinite", "error", "NaN", "lower it", {})
    c = Finding("lr_too_high", "error", "diverged", "lower it 10x", {"steps": 3})
    out = merged([a, b, c])
    assert [(f.code, f.severity) for f in out] == [("lr_too_high", "error"), ("nonfinite", "error")]
    assert out[0].message == "diverged" and out[0].evidence["also"] == [{"message": "updates are large", "ratio": 0.5}]
    # a real case: divergence seen by two rules gives one lr_too_high
    f = diagnose(CFG, steps([2.3] * 50 + [2.6] * 50), {"status": "diverged", "stop_reason": "diverged: ...",
                                                       "skipped_steps": 3, "rollbacks": 1}, None, 10)
    assert [x.code for x in f].count("lr_too_high") == 1
