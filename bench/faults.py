"""Reliability harness: kills, interrupts, NaNs, invalid input, a dying search worker. Not a
test (it takes ~20 minutes); it prints counts for README's reliability promises.

    python bench/faults.py [--only kill9 ckpt signals nan invalid search] [--runs N]

  kill9    N runs killed with SIGKILL at a random step, resumed, compared bit for bit with
           an uninterrupted run (CPU)
  ckpt     N kills timed at random inside a run that writes a checkpoint every step (so many
           land inside a write); each resume must load the last good checkpoint, and end bit
           for bit where the uninterrupted run ends
  signals  5 SIGTERM and 5 SIGINT mid-run: exit 0 with the resume line, resume identical
  nan      10 runs with the weights poisoned (NaN) at a chosen step: skipped, rolled back with
           a lower LR, or stopped with the cause; never a crash or a NaN model
  invalid  200+ invalid values over every config section and every subcommand: clean exit 2
           / traceback / accepted / hang (in this process, a 60 s alarm per command)
  search   a 2-worker search with one worker killed mid-trial, 3 times: lost and duplicated
           trials
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
RUN = ["data.name=digits", "model.name=mlp", "model.width=64", "model.depth=2", "train.batch_size=32",
       "train.checkpoint_every=7", "regularize.dropout=0.2", "augment.noise=0.05", "train.progress=false",
       "train.log_every=1", "optim.name=momentum", "optim.lr=0.01", "train.epochs=400", "train.max_steps=500"]


def coach(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "coach", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def last_step(run_dir: Path) -> int:
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return -1
    lines = [ln for ln in log.read_text().splitlines() if ln.endswith("}")]
    return json.loads(lines[-1])["step"] if lines else -1


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file
    x, y = load_file(str(a / "weights" / "final.safetensors")), load_file(str(b / "weights" / "final.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def reference(tmp: Path, extra: list[str]) -> Path:
    ref = tmp / "ref"
    p = coach("train", "--set", *RUN, *extra, "--run-dir", str(ref))
    assert p.wait() == 0, p.stdout.read()
    return ref


def kill_and_resume(tmp: Path, ref: Path, i: int, extra: list[str], kill_at: int | None, delay: float | None,
                    sig: int = signal.SIGKILL) -> dict:
    """Start a run, kill it at a step (or after a delay), resume, compare with ref."""
    d = tmp / f"v{i}"
    p = coach("train", "--set", *RUN, *extra, "--run-dir", str(d))
    start = None  # a delay counts from the first logged step: the kills land among the steps
    while p.poll() is None:
        if start is None and last_step(d) >= 0:
            start = time.time()
        if (kill_at is not None and last_step(d) >= kill_at) or (delay is not None and start is not None
                                                                 and time.time() - start >= delay):
            break
        time.sleep(0.002)
    if p.poll() is not None:
        return {"ok": False, "why": "finished before the kill"}
    p.send_signal(sig)
    out, _ = p.communicate(timeout=120)
    result = {"exit": p.returncode, "resume_line": "--resume" in out, "traceback": "Traceback" in out}
    if sig == signal.SIGKILL and (d / "summary.json").exists():
        return {"ok": False, "why": "finished before the kill"}
    r = coach("train", "--resume", str(d))
    out_r, _ = r.communicate(timeout=300)
    result.update({"resume_exit": r.returncode, "identical": r.returncode == 0 and same_weights(ref, d)})
    result["ok"] = result["identical"]
    if r.returncode != 0:
        result["why"] = out_r[-500:]
    return result


def bench_kill9(runs: int) -> str:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = reference(tmp, [])
        rng = random.Random(0)
        results = [kill_and_resume(tmp, ref, i, [], rng.randint(20, 480), None) for i in range(runs)]
    ok = sum(r["ok"] for r in results)
    return f"kill -9 at a random step, resumed, bit-identical: {ok}/{runs}" + "".join(
        f"\n  failed: {r.get('why', r)}" for r in results if not r["ok"])


def bench_ckpt(runs: int) -> str:
    extra = ["train.checkpoint_every=1"]  # a checkpoint every step: kills land inside writes
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = reference(tmp, extra)
        rng = random.Random(1)
        steps = float(json.loads((ref / "summary.json").read_text())["time"])
        results = [kill_and_resume(tmp, ref, i, extra, None, rng.uniform(0.0, 0.95) * steps) for i in range(runs)]
    ok = sum(r["ok"] for r in results)
    return f"kill -9 at a random time with a checkpoint written every step, resumed, bit-identical: {ok}/{runs}" + \
        "".join(f"\n  failed: {r.get('why', r)}" for r in results if not r["ok"])


def bench_signals(runs: int = 5) -> str:
    lines = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = reference(tmp, [])
        rng = random.Random(2)
        for name, sig in (("SIGTERM", signal.SIGTERM), ("SIGINT", signal.SIGINT)):
            rs = [kill_and_resume(tmp, ref, i + 100 * sig, [], rng.randint(20, 480), None, sig) for i in range(runs)]
            ok = sum(r.get("exit") == 0 and r.get("resume_line") and not r.get("traceback") and r["ok"] for r in rs)
            lines.append(f"{name} mid-run: exit 0 with the resume line, resume bit-identical: {ok}/{runs}")
    return "\n".join(lines)


def bench_nan(runs: int = 10) -> str:
    import math

    import torch

    import coach
    from coach.train import Callback

    class Poison(Callback):
        """Fill the first weight matrix with NaN after `step` (bad data, a bad kernel, a bit flip)."""

        def __init__(self, step: int, times: int):
            self.step, self.times = step, times

        def on_step_end(self, t, logs) -> None:  # noqa: ANN001
            if self.times and t.step == self.step:
                self.times -= 1
                with torch.no_grad():
                    next(p for p in t.raw_model.parameters() if p.dim() == 2).fill_(float("nan"))

    handled, notes = 0, []
    with tempfile.TemporaryDirectory() as t:
        for i in range(runs):
            step, times = 15 + 9 * i, 1 + i % 3  # 3 epochs of digits are ~120 steps
            cfg = coach.make_config(overrides=[*RUN[:-2], "train.epochs=3", "train.max_rollbacks=2",
                                               "train.checkpoint_every=10"])
            d = Path(t) / f"n{i}"
            try:
                run = coach.fit(cfg, run_dir=d, callbacks=[Poison(step, times)])
            except Exception as e:  # noqa: BLE001  (the harness counts crashes)
                notes.append(f"run {i}: crashed: {e!r}")
                continue
            s = run.summary
            finite = all(math.isfinite(v) for v in (s["final"]["train_loss"], s["final"]["val_loss"]) if v == v) \
                and all(torch.isfinite(p).all() for p in run.model.parameters())
            ok = (s["status"] == "completed" and s["rollbacks"] >= 1 and finite) or \
                 (s["status"] == "diverged" and "diverged" in (s["stop_reason"] or ""))
            handled += ok
            if not ok:
                notes.append(f"run {i}: {s['status']} rollbacks={s['rollbacks']} finite={finite}")
    return f"NaN weights at a chosen step: rolled back with a lower LR or stopped with the cause: {handled}/{runs}" \
        + "".join(f"\n  {n}" for n in notes)


INVALID = {  # key: invalid values (as the command line would give them)
    "seed": ["-1.5", "true", "abc"], "data.name": ["imagenet", "5"], "data.val_fraction": ["0", "1.5", "-1", "inf"],
    "data.test_fraction": ["2", "nan"], "data.limit": ["0", "-5", "true", "99999999999999999999"],
    "data.per_class": ["0", "x"], "data.classes": ["[0, 99]", "5", "[1, 1]"], "data.preprocess": ["whiten"],
    "data.pca_components": ["0", "-1"], "data.image_size": ["[0, 5]", "[99999, 99999]", "8"],
    "data.color": ["purple"], "data.layout": ["cube"],
    "model.name": ["vgg99"], "model.activation": ["swish", "1"], "model.init": ["zeros!"],
    "model.width": ["0", "true", "99999999999999999999", "-3", "2.5"], "model.depth": ["0", "99999999999999999999"],
    "model.hidden": ["[0]", "[64, true]", "abc"], "model.blocks": ["0", "1e9"], "model.norm": ["layer"],
    "model.pool": ["median"], "regularize.dropout": ["1", "-0.1", "true"], "regularize.spatial_dropout": ["1.5"],
    "regularize.stochastic_depth": ["0.3", "2"], "regularize.l2": ["-1", "inf"],
    "regularize.l1": ["nan"], "regularize.label_smoothing": ["1", "-0.5"],
    "augment.hflip": ["[1]"], "augment.crop_padding": ["-1", "true", "99999999999999999999"],
    "augment.resized_crop": ["maybe"], "augment.crop_scale": ["[0.5]", "[0.3, inf]"], "augment.brightness": ["-1"],
    "augment.cutout": ["-2", "1e12"], "augment.mixup": ["-1", "inf"], "augment.shift": ["-1"], "augment.noise": ["nan"],
    "optim.name": ["adamax"], "optim.lr": ["0", "-1", "inf", "nan", "fast", "true"], "optim.momentum": ["1", "-0.5"],
    "optim.weight_decay": ["-1", "inf"], "optim.betas": ["[0.9]", "[2, 0.999]"], "optim.eps": ["0"],
    "schedule.name": ["sawtooth"], "schedule.warmup": ["-1", "inf"], "schedule.gamma": ["0"],
    "schedule.milestones": ["abc", "[0.5, 3]"], "schedule.cycles": ["0", "true"], "schedule.pct_start": ["1"],
    "train.epochs": ["0", "true", "1e99", "-1"], "train.max_steps": ["0"], "train.batch_size": ["0", "10000000000"],
    "train.time_budget": ["soon", "-5", "inf"], "train.loss": ["mse"], "train.device": ["tpu"],
    "train.precision": ["fp8"], "train.grad_clip": ["0", "-1"], "train.ema": ["1", "0"],
    "train.early_stopping": ["0"], "train.mode": ["median"], "train.eval_every": ["0"], "train.log_every": ["0"],
    "train.max_nonfinite": ["0"], "nonsense.key": ["1"], "optim.lrr": ["0.1"],
}
SAFE = ["data.name=digits", "model.name=mlp", "model.width=8", "model.depth=1", "train.epochs=1", "train.max_steps=2",
        "train.progress=false"]


def cases(tmp: Path) -> list[list[str]]:
    out = []
    for key, values in INVALID.items():
        for v in values:
            for sub in ("train", "check"):
                safe = [s for s in SAFE if not s.startswith(key + "=")]
                out.append([sub, "--set", *safe, f"{key}={v}"] + (["--run-dir", str(tmp / "r")] if sub == "train"
                                                                    else []))
    nothing = str(tmp / "does-not-exist")
    out += [
        ["search", "--set", *SAFE, "--strategy", "annealing"], ["search", "--set", *SAFE, "--pruner", "magic"],
        ["search", "--set", *SAFE, "search={optim.lr: 'loguniform(1, 0.1)'}"],
        ["search", "--set", *SAFE, "search={optim.lr: 'normal(0, 1)'}"], ["search", "--set", *SAFE, "--trials", "0"],
        ["autopilot", "--data", "nothing-like-this"], ["autopilot", "--data", "digits", "--budget", "1min"],
        ["autopilot", "--data", "digits", "--budget", "-5s"], ["autopilot", "--data", "digits", "--set", "optim.lr=1"],
        ["autopilot", "--data", "digits", "--set", "data.val_fraction=2"], ["autopilot", "--resume", nothing],
        ["autopilot", "--data", str(tmp)],
        ["evaluate", nothing], ["evaluate", str(tmp / "r"), "--tta", "mirror"], ["evaluate", str(tmp / "r"), "--split",
                                                                                 "train"],
        ["predict", nothing, nothing], ["predict", str(tmp / "r"), nothing], ["predict", str(tmp / "r"), str(tmp / "x.npz"),
                                                                              "--weights", "median"],
        ["transfer", "--from", nothing, "--set", *SAFE], ["transfer", "--from", str(tmp / "r"), "--mode", "sideways",
                                                          "--set", *SAFE],
        ["report", nothing], ["datasets", "--fetch", "imagenet"], ["train", "--resume", nothing],
        ["check", str(tmp / "missing.yaml")], ["train", "--set", *SAFE, "model.name=convnet", "regularize.dropconnect=0.3"],
        ["train", "--set", *SAFE, "optim.name=lbfgs", "regularize.dropout=0.5"], ["train", "--set", "optim.lr"],
    ]
    return out


def bench_invalid() -> str:
    from coach.cli import main

    counts = {"exit 2": 0, "traceback": 0, "accepted": 0, "hang": 0, "other exit": 0}
    notes = []

    def alarm(*_):  # noqa: ANN002
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        import numpy as np
        np.savez(tmp / "x.npz", x=np.zeros((2, 64), np.float32))
        main(["train", "--set", *SAFE, "--run-dir", str(tmp / "r")])  # a valid run for evaluate/predict to refuse
        for argv in cases(tmp):
            err = io.StringIO()
            signal.alarm(60)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    code = main(argv)
            except SystemExit as e:  # argparse: exit 2 with usage
                code = e.code
            except TimeoutError:
                counts["hang"] += 1
                notes.append(f"hang: {argv}")
                continue
            except BaseException as e:  # noqa: BLE001
                counts["traceback"] += 1
                notes.append(f"traceback {e.__class__.__name__}: {' '.join(argv[-3:])}: {str(e)[:100]}")
                continue
            finally:
                signal.alarm(0)
            key = "exit 2" if code == 2 else "accepted" if code == 0 else "other exit"
            counts[key] += 1
            if key != "exit 2":
                notes.append(f"{key} ({code}): {' '.join(a for a in argv if not a.startswith(tuple(SAFE)))}")
    total = sum(counts.values())
    return f"{total} invalid inputs: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + \
        "".join(f"\n  {n}" for n in notes)


def bench_search(times: int = 3) -> str:
    import optuna

    lost = dup = killed = 0
    with tempfile.TemporaryDirectory() as t:
        for i in range(times):
            sweep = Path(t) / f"s{i}"
            p = coach("search", "--set", "data.name=digits", "model.name=mlp", "model.width=32", "train.epochs=30",
                      "train.progress=false", "search={optim.lr: 'loguniform(1e-3, 1e-1)'}", "--trials", "8",
                      "--strategy", "random", "--pruner", "none", "--workers", "2", "--sweep-dir", str(sweep))
            victim = None
            deadline = time.time() + 120
            while victim is None and time.time() < deadline and p.poll() is None:
                try:  # a running trial of the child worker (worker 0 is the parent)
                    storage = optuna.storages.JournalStorage(
                        optuna.storages.journal.JournalFileBackend(str(sweep / "journal.log")))
                    study = optuna.load_study(study_name="coach", storage=storage)
                    running = [tr for tr in study.get_trials(deepcopy=False)
                               if tr.state.name == "RUNNING" and tr.user_attrs.get("pid") not in (None, p.pid)]
                    victim = running[0].user_attrs["pid"] if running else None
                except (KeyError, FileNotFoundError, ValueError):
                    pass
                time.sleep(0.2)
            if victim:
                os.kill(victim, signal.SIGKILL)
                killed += 1
            p.communicate(timeout=600)
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "journal.log")))
            trials = optuna.load_study(study_name="coach", storage=storage).get_trials()
            done = [tr for tr in trials if tr.state.name in ("COMPLETE", "PRUNED")]
            lost += max(0, 8 - len(done))
            params = [json.dumps(tr.params, sort_keys=True) for tr in done]
            dup += len(params) - len(set(params))
    return f"2-worker search, one worker killed mid-trial, {times} times ({killed} kills): lost trials {lost}, " \
           f"duplicated trials {dup}"


BENCHES = {"kill9": lambda n: bench_kill9(n), "ckpt": lambda n: bench_ckpt(n), "signals": lambda n: bench_signals(),
           "nan": lambda n: bench_nan(), "invalid": lambda n: bench_invalid(), "search": lambda n: bench_search()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHES))
    ap.add_argument("--runs", type=int, default=20, help="kills for kill9 and ckpt")
    args = ap.parse_args()
    for name in args.only or BENCHES:
        t0 = time.time()
        print(BENCHES[name](args.runs) + f"   [{time.time() - t0:.0f}s]", flush=True)


if __name__ == "__main__":
    main()
