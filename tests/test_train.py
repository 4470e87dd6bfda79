"""The fit loop: learning, the run directory, and never losing work."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import coach
from coach.config import save_config
from coach.errors import UserError
from coach.train import Callback, Run
from coach.train import checkpoint as ckpt
from tests.test_loop import NaNAt

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 32, "depth": 1},
         "optim": {"lr": 0.01}, "train": {"epochs": 2, "progress": False, "batch_size": 64}}


def cfg(**over):
    c = coach.make_config(QUICK)
    return c.replace(**over) if over else c


def test_fit_learns_and_writes_the_run_dir(tmp_path):
    run = coach.fit(cfg(**{"train.epochs": 5}), run_dir=tmp_path / "r")
    s = run.summary
    assert s["status"] == "completed" and s["final"]["val_acc"] > 0.9
    for f in ("config.yaml", "model.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
              "checkpoints/best.pt", "weights/final.safetensors", "weights/best.safetensors",
              "preprocess.safetensors"):
        assert (tmp_path / "r" / f).exists(), f
    evals = [r for r in Run.open(tmp_path / "r").metrics() if r["type"] == "eval"]
    assert len(evals) == 5 and {"train_loss", "val_acc", "lr", "time"} <= set(evals[0])
    assert {"coach", "torch", "python"} <= set(s["versions"]) and s["seed"] == 0 and s["device"] == "cpu"
    best = Run.open(tmp_path / "r").load_model("best")
    assert coach.evaluate_model(best, run.data.val)["acc"] == pytest.approx(s["best"]["value"])


def test_every_optimizer_and_schedule_runs(tmp_path):
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lbfgs"):
        lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "lbfgs": 0.5}.get(name, 1e-2)
        run = coach.fit(cfg(**{"optim.name": name, "optim.lr": lr, "train.epochs": 3}), run_dir=tmp_path / name)
        assert run.summary["final"]["val_acc"] > 0.8, name
    for sched in ("step", "multistep", "exponential", "inverse_time", "cosine", "linear", "onecycle", "cyclic",
                  "plateau"):
        run = coach.fit(cfg(**{"schedule.name": sched, "train.epochs": 1}), run_dir=tmp_path / sched)
        assert run.summary["status"] == "completed"


def test_regularizers_losses_and_augmentation_run(tmp_path):
    run = coach.fit(cfg(**{"model.name": "convnet", "model.width": 8, "regularize.l1": 1e-5, "regularize.l2": 1e-4,
                           "regularize.dropout": 0.1, "train.loss": "svm", "augment.crop_padding": 1,
                           "augment.mixup": 0.2, "train.grad_clip": 1.0, "train.ema": 0.9}), run_dir=tmp_path / "r")
    assert run.summary["status"] == "completed"
    assert (tmp_path / "r" / "weights" / "ema.safetensors").exists()
    evals = [r for r in run.__class__.open(tmp_path / "r").metrics() if r["type"] == "eval"]
    assert "ema_val_acc" in evals[-1]


def test_time_budget_stops_and_fits_the_schedule(tmp_path):
    run = coach.fit(cfg(**{"train.epochs": 100000, "train.time_budget": 1}), run_dir=tmp_path / "b")
    assert run.summary["stop_reason"] == "time budget of 1s used" and run.summary["time"] < 1.5
    per_epoch = len(run.data.train) // 64
    assert run.summary["total_steps"] == 100000 * per_epoch  # without fit_to_budget the plan stays
    # fit_to_budget: the cosine horizon shrinks to what the budget affords, so the LR decays
    # to (nearly) zero inside the budget rather than being cut off at its peak
    run = coach.fit(cfg(**{"train.epochs": 100000, "train.time_budget": 2, "train.fit_to_budget": True,
                           "schedule.name": "cosine", "train.eval_every": 5}), run_dir=tmp_path / "c")
    s = run.summary
    assert s["steps"] <= s["total_steps"] < 1.5 * s["steps"]  # the horizon is where the budget ended
    lrs = [r["lr"] for r in Run.open(tmp_path / "c").metrics() if r["type"] == "eval"]
    assert lrs[-1] < 0.1 * 0.01 and max(lrs) > 0.5 * 0.01


def test_nonfinite_steps_are_skipped_then_rolled_back(tmp_path):
    c = cfg(**{"train.max_nonfinite": 3, "train.epochs": 3})
    run = coach.fit(c, run_dir=tmp_path / "r", callbacks=[NaNAt([3, 25, 26, 27])])
    s = run.summary
    assert s["status"] == "completed" and s["skipped_steps"] == 4 and s["rollbacks"] == 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_divergence_stops_with_a_reason(tmp_path):
    run = coach.fit(cfg(**{"optim.name": "sgd", "optim.lr": 1e12, "model.norm": "none", "train.max_rollbacks": 2,
                           "train.max_nonfinite": 2, "train.epochs": 5}), run_dir=tmp_path / "r")
    s = run.summary
    assert s["status"] == "diverged" and s["rollbacks"] == 2 and "learning rate is too high" in s["stop_reason"]


def test_atomic_save_survives_a_crash_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ckpt.atomic_save({"step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class _RunsCode:
    """A pickle that calls os.system on loading: what a malicious checkpoint carries."""

    def __reduce__(self):
        return (os.system, ("echo pwned > " + os.devnull,))


def test_checkpoints_load_only_safely(tmp_path):
    torch.save({"x": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(UserError) as e:
        ckpt.load(tmp_path / "evil.pt")
    msg = str(e.value)
    assert "evil.pt" in msg and "could run code" in msg and "\n" not in msg and "weights_only" not in msg
    (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:40])
    with pytest.raises(UserError, match="cut.pt: not loaded: it is truncated or corrupt"):
        ckpt.load(tmp_path / "cut.pt")


def test_fp16_on_a_cpu_is_said_and_recorded(tmp_path, capsys):
    run = coach.fit(cfg(**{"train.epochs": 1, "train.precision": "fp16", "train.device": "cpu"}), run_dir=tmp_path / "r")
    assert "train.precision=fp16 is not used on cpu" in capsys.readouterr().err
    assert run.summary["warnings"] and "fp32" in run.summary["warnings"][0]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["warnings"] == run.summary["warnings"]
    assert coach.fit(cfg(**{"train.epochs": 1}), run_dir=tmp_path / "q").summary["warnings"] == []


def test_refused_weight_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    from coach.train.run import read_safetensors, rebuild_model
    run = coach.fit(cfg(**{"train.epochs": 1}), run_dir=tmp_path / "r")
    w = tmp_path / "r" / "weights" / "final.safetensors"
    w.write_bytes(w.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="final.safetensors: not a readable safetensors file"):
        read_safetensors(w)
    state = {k: v.clone() for k, v in run.model.state_dict().items()}
    key = next(k for k, v in state.items() if v.dim() == 2)
    state[key] = torch.zeros(3, 3)
    with pytest.raises(UserError, match=f"wrong shapes: {key} \\(3, 3\\)"):
        rebuild_model(run.config, coach.Run.open(tmp_path / "r").spec, state)
    save_file({"w": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="missing: "):
        rebuild_model(run.config, coach.Run.open(tmp_path / "r").spec, read_safetensors(tmp_path / "other.safetensors"))


# --------------------------------------------------------------- processes
SLOW = ["data.name=digits", "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=400",
        "train.batch_size=32", "train.checkpoint_every=7", "regularize.dropout=0.2", "augment.noise=0.05",
        "train.progress=false", "train.log_every=1", "optim.name=momentum", "optim.lr=0.01"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _coach(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "coach", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for_step(run_dir, step, proc, timeout=120):
    log = run_dir / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists():
            lines = [ln for ln in log.read_text().splitlines() if ln.endswith("}")]
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    raise AssertionError("run did not reach the step in time")


# image data with every stateful or random setting on: EMA, mixup and cutmix (alternating per
# batch), crops, flips, dropout and cyclic snapshots; all must come back bit for bit
IMAGE = ["data.name=digits", "model.name=convnet", "model.width=4", "model.blocks=1", "train.batch_size=32",
         "train.epochs=12", "train.checkpoint_every=7", "train.progress=false", "train.log_every=1",
         "train.ema=0.99", "augment.mixup=0.2", "augment.cutmix=1.0", "augment.crop_padding=1",
         "augment.hflip=true", "regularize.dropout=0.2", "schedule.name=cyclic", "schedule.cycles=3",
         "train.snapshots=true", "optim.name=momentum", "optim.lr=0.01"]


@pytest.mark.parametrize("settings, kill_at", [(SLOW + ["train.max_steps=600"], 250), (IMAGE, 200)],
                         ids=["mlp-dropout-noise", "image-ema-mixup-cutmix-crops-snapshots"])
def test_kill_9_and_resume_is_bit_identical(tmp_path, settings, kill_at):
    # the reference runs beside the victim (one thread each: the suite's two cores)
    ref = _coach("train", "--set", *settings, "--run-dir", str(tmp_path / "ref"))
    victim = _coach("train", "--set", *settings, "--run-dir", str(tmp_path / "v"))
    _wait_for_step(tmp_path / "v", kill_at, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "v" / "summary.json").exists()  # it really died mid-run
    with open(tmp_path / "v" / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "st')  # a kill can land in the middle of a line's write
    resumed = _coach("train", "--resume", str(tmp_path / "v"))
    assert resumed.wait() == 0, resumed.stdout.read()
    assert ref.wait() == 0, ref.stdout.read()
    files = [p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.safetensors")]
    files += [p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref/checkpoints/snapshots").glob("*.pt")]
    if "train.ema=0.99" in settings:
        assert {"weights/ema.safetensors", "checkpoints/snapshots/snapshot-3.pt"} <= {str(f) for f in files}
    for f in files:
        a, b = ((load_file(str(d / f)) if f.suffix == ".safetensors" else ckpt.load(d / f)["model"])
                for d in (tmp_path / "ref", tmp_path / "v"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "v/metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["type"] == "step"]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_resume_before_the_first_checkpoint_starts_again(tmp_path):
    c = cfg(**{"train.checkpoint_every": 1000})
    ref = coach.fit(c, run_dir=tmp_path / "ref")
    victim = tmp_path / "v"  # what a kill during the first steps leaves: the config and a torn log line
    victim.mkdir()
    save_config(c, victim / "config.yaml")
    (victim / "metrics.jsonl").write_text('{"type": "step", "step": 1, "loss": 2.3}\n{"type": "st')
    run = coach.fit(resume=victim)
    assert run.summary["status"] == "completed"
    a, b = (load_file(str(d / "weights/final.safetensors")) for d in (ref.dir, victim))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [[json.loads(ln)["step"] for ln in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref.dir, victim)]
    assert steps[0] == steps[1]  # the old lines (and the torn one) are gone, none written twice


def test_sigint_checkpoints_and_exits_0(tmp_path):
    p = _coach("train", "--set", *SLOW, "--run-dir", str(tmp_path / "r"))
    _wait_for_step(tmp_path / "r", 50, p)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and "coach train --resume" in out and "Traceback" not in out
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert summary["status"] == "interrupted"
    state = ckpt.load(tmp_path / "r/checkpoints/last.pt")
    assert state["step"] == summary["steps"] > 0


@pytest.mark.parametrize("norm", [["model.norm=none"], ["model.norm=batch", "train.sync_batchnorm=true"]],
                         ids=["no-norm", "sync-batchnorm"])
def test_ddp_two_gloo_processes_match_one(tmp_path, norm):
    common = ["data.name=digits", "model.name=mlp", "model.width=16", "train.epochs=1", *norm,
              "train.batch_size=64", "train.progress=false", "optim.name=sgd", "optim.lr=0.1"]
    single = _coach("train", "--set", *common, "--run-dir", str(tmp_path / "one"))  # beside the two
    import socket
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "coach", "train", "--set", *common,
                          "--run-dir", str(tmp_path / "two")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert single.wait() == 0, single.stdout.read()
    s = json.loads((tmp_path / "two/summary.json").read_text())
    assert s["world_size"] == 2
    a = load_file(str(tmp_path / "one/weights/final.safetensors"))
    b = load_file(str(tmp_path / "two/weights/final.safetensors"))
    assert a.keys() == b.keys() and (any("running_mean" in k for k in a) == ("model.norm=batch" in norm))
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].numel())
    assert worst < 1e-4, worst  # same global batch, averaged gradients (float sums in another order)


def test_cli_train_help_and_resume_errors(tmp_path):
    p = subprocess.run([sys.executable, "-m", "coach", "train", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--resume" in p.stdout
    p = subprocess.run([sys.executable, "-m", "coach", "train", "--resume", str(tmp_path)], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "nothing to resume" in p.stderr


def test_example_config_validates():
    cfg = coach.load_config(ROOT / "examples" / "fashion-convnet.yaml")
    assert cfg.optim.name == "adamw" and cfg.train.ema == 0.999


def test_callbacks_add_to_the_defaults_and_replacing_them_is_explicit(tmp_path):
    from coach.train.callbacks import EMA, GradClip, KeepBest, MetricsLog, TimeBudget

    class Spy(Callback):
        def on_train_begin(self, t):
            self.kinds = {type(cb) for cb in t.callbacks}

    c = cfg(**{"train.ema": 0.9, "train.grad_clip": 1.0, "train.time_budget": 60, "train.epochs": 1})
    spy = Spy()
    coach.fit(c, run_dir=tmp_path / "add", callbacks=[spy])
    assert {EMA, GradClip, KeepBest, MetricsLog, TimeBudget, Spy} <= spy.kinds
    assert (tmp_path / "add" / "metrics.jsonl").exists() and (tmp_path / "add" / "weights/ema.safetensors").exists()
    spy = Spy()
    coach.fit(c, run_dir=tmp_path / "own", callbacks=[spy], default_callbacks=False)
    assert spy.kinds == {Spy} and not (tmp_path / "own" / "metrics.jsonl").exists()


def test_keep_best_breaks_a_tie_on_the_metric_by_the_validation_loss():
    """A saturated validation accuracy (1.0 from epoch 28 of 92 on a small split) must not keep
    the first checkpoint that reached it: among equal accuracies the lower validation loss wins."""
    from coach.train.callbacks import KeepBest

    class Loop:
        step, saved = 0, []

        def save_best(self, logs):
            self.saved.append(self.step)

    keep, t = KeepBest("val_acc", "max"), Loop()
    for step, acc, loss in [(1, 0.9, 0.5), (2, 1.0, 0.25), (3, 1.0, 0.05), (4, 1.0, 0.08), (5, 0.95, 0.01),
                            (6, 1.0, 0.005)]:
        t.step = step
        keep.on_eval_end(t, {"val_acc": acc, "val_loss": loss})
    assert t.saved == [1, 2, 3, 6] and keep.best_step == 6 and keep.best_tiebreak == 0.005
    restored = KeepBest("val_acc", "max")
    restored.load_state_dict(keep.state_dict())
    assert restored.best_tiebreak == 0.005
    # a loss monitored in min mode has nothing to break ties with but itself
    lossy, t.saved = KeepBest("val_loss", "min"), []
    for step, loss in [(1, 0.3), (2, 0.3), (3, 0.2)]:
        t.step = step
        lossy.on_eval_end(t, {"val_loss": loss})
    assert t.saved == [1, 3]


def test_a_resume_starts_from_the_checkpoint_not_from_step_0(tmp_path):
    """A run that restarted from scratch ends with the same weights on a deterministic MLP: what
    shows a real resume is where it starts (the checkpoint's step, its weights) and that no step
    before it is taken again."""
    class Stop(Callback):
        def on_step_end(self, t, logs):
            if t.step == 25:
                t.stop_reason = "interrupted"

    class Seen(Callback):
        def on_train_begin(self, t):
            self.start = t.step
            self.weights = {k: v.clone() for k, v in t.raw_model.state_dict().items()}
            self.steps = []

        def on_step_end(self, t, logs):
            self.steps.append(t.step)

    run = coach.fit(cfg(**{"train.epochs": 3}), run_dir=tmp_path / "r", callbacks=[Stop()])
    assert run.summary["status"] == "interrupted" and run.summary["steps"] == 25
    saved = ckpt.load(tmp_path / "r" / "checkpoints" / "last.pt")
    seen = Seen()
    coach.fit(resume=tmp_path / "r", callbacks=[seen])
    assert seen.start == saved["step"] == 25 and seen.steps[0] == 26
    assert all(torch.equal(seen.weights[k], v) for k, v in saved["model"].items())


def test_regularizers_augmentation_and_warmup_act_inside_a_training_step(tmp_path):
    """Settings tested as functions elsewhere, shown to act in the fit loop: the batch the model
    sees is not the raw batch, the layers are active in training and the LR warms up."""
    seen = {}

    class Peek(Callback):
        def on_train_begin(self, t):
            t.raw_model.features.register_forward_pre_hook(
                lambda m, a: seen.setdefault("batch", a[0].detach().clone()) if m.training else None)

    def batch_of(over, data="digits"):
        seen.clear()
        c = coach.make_config({"data": {"name": data}, "model": {"name": "convnet", "width": 4, "depth": 1},
                               "train": {"epochs": 1, "max_steps": 3, "progress": False, "batch_size": 16,
                                         "monitor_every": 0}}).replace(**over)
        run = coach.fit(c, run_dir=tmp_path / str(len(list(tmp_path.iterdir()))), callbacks=[Peek()])
        return run, seen["batch"]

    raw = batch_of({})[1]
    for over in ({"augment.brightness": 0.5}, {"augment.contrast": 0.5}, {"augment.pca_jitter": 0.5}):
        assert not torch.allclose(batch_of(over)[1], raw), over
    signal = batch_of({}, "mnist1d")[1]
    assert not torch.allclose(batch_of({"augment.shift": 4}, "mnist1d")[1], signal)
    run, _ = batch_of({"schedule.warmup": 3, "train.log_every": 1, "optim.lr": 0.01})
    lrs = [json.loads(ln)["lr"] for ln in (run.dir / "metrics.jsonl").read_text().splitlines() if '"step"' in ln
           and json.loads(ln)["type"] == "step"]
    assert lrs[0] < lrs[1] < lrs[2] <= 0.01  # warm-up: the LR rises over the first steps


def acted(mod, x, out):
    """Did a random layer's noise act on this forward? (compared with its deterministic output)"""
    name = type(mod).__name__
    if name == "DropConnectLinear":
        return not torch.allclose(out, torch.nn.functional.linear(x, mod.weight, mod.bias))
    zero = out.flatten(2 if name == "SpatialDropout" else 1).abs().sum(-1) == 0
    return bool(zero.any())  # whole channels (spatial dropout) or whole samples' branches (stochastic depth)


@pytest.mark.parametrize("name, over, layer", [
    ("mlp", {"regularize.dropconnect": 0.5}, "DropConnectLinear"),
    ("convnet", {"regularize.spatial_dropout": 0.5}, "SpatialDropout"),
    ("resnet", {"regularize.stochastic_depth": 0.9}, "StochasticDepth"),
])
def test_random_layers_drop_in_a_training_step(tmp_path, name, over, layer):
    """The layer is in the model the config builds and its noise acts at every training step."""
    calls = []

    class Watch(Callback):
        def on_train_begin(self, t):
            m = next(m for m in t.raw_model.modules() if type(m).__name__ == layer)
            m.register_forward_hook(lambda mod, a, out: calls.append(acted(mod, a[0], out)) if mod.training else None)

    model = {"name": name, "width": 8, "depth": 2} | ({"blocks": 1} if name != "mlp" else {})
    c = coach.make_config({"data": {"name": "digits"}, "model": model,
                           "train": {"epochs": 1, "max_steps": 3, "progress": False, "monitor_every": 0}}).replace(**over)
    coach.fit(c, run_dir=tmp_path / "r", callbacks=[Watch()])
    assert len(calls) == 3 and all(calls)
