"""The CLI's own decisions, and commands as a person runs them (in a subprocess): evaluate on the
test split, predict with chosen weights, train --check, SIGTERM and a second Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import coach
from coach.cli import demo_folder


def test_demo_runs_again_without_losing_the_last_one(tmp_path):
    out = tmp_path / "demo"
    assert demo_folder(out) == (out, False)  # first time: a new session here
    out.mkdir()
    (out / "state.json").write_text("{}")
    assert demo_folder(out) == (out, True)  # interrupted: resumed
    (out / "result.json").write_text("{}")
    assert demo_folder(out) == (tmp_path / "demo-2", False)  # finished: kept, the next one beside it
    (tmp_path / "demo-2").mkdir()
    assert demo_folder(out) == (tmp_path / "demo-3", False)


# ------------------------------------------------------- the commands, as a person runs them
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL = ["data.name=digits", "model.name=mlp", "model.width=32", "train.batch_size=64", "train.progress=false",
         "optim.lr=0.01"]


def coach_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "coach", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "run"
    p = coach_cli("train", "--set", *SMALL, "train.epochs=3", "train.ema=0.9", "--run-dir", str(d))
    assert p.returncode == 0, p.stdout + p.stderr
    return coach.Run.open(d)


def test_evaluate_split_test_scores_the_test_split(ema_run):
    from coach.train import evaluate_model
    data = coach.load_data(ema_run.config.data, ema_run.config.seed)
    best = ema_run.load_model("best")
    for split, part in (("test", data.test), ("val", data.val)):
        p = coach_cli("evaluate", str(ema_run.dir), "--split", split)
        assert p.returncode == 0 and f"(split: {split})" in p.stdout, p.stderr
        rows = json.loads((ema_run.dir / f"evaluation-{split}.json").read_text())["rows"]
        assert rows[0]["acc"] == pytest.approx(evaluate_model(best, part)["acc"])
    assert len(data.test) != len(data.val)  # so the two splits cannot be mistaken for each other
    p = coach_cli("evaluate", str(ema_run.dir), "--split", "train")
    assert p.returncode == 2 and "--split: invalid choice: 'train' (choose from 'val', 'test')" in p.stderr


def test_predict_uses_the_weights_asked_for(ema_run, tmp_path):
    data = coach.load_data(ema_run.config.data, ema_run.config.seed)
    x = data.val.x[:64]
    np.savez(tmp_path / "x.npz", x=x.numpy())
    probs = {}
    for w in ("ema", "final", "best"):
        p = coach_cli("predict", str(ema_run.dir), str(tmp_path / "x.npz"), "--weights", w, "--json")
        assert p.returncode == 0, p.stderr
        rows = json.loads(p.stdout)
        model = ema_run.load_model(w).eval()
        with torch.no_grad():
            expected = model(x).softmax(1)
        assert [r["index"] for r in rows] == expected.argmax(1).tolist(), w
        assert [r["probability"] for r in rows] == pytest.approx(expected.max(1).values.tolist(), abs=1e-5)
        probs[w] = [r["probability"] for r in rows]
    assert probs["ema"] != probs["final"]  # different weights, different answers
    p = coach_cli("predict", str(ema_run.dir), str(tmp_path / "x.npz"), "--weights", "swa")
    assert p.returncode == 2 and "--weights: invalid choice: 'swa' (choose from 'best', 'final', 'ema')" in p.stderr
    (ema_run.dir / "weights" / "ema.safetensors").rename(tmp_path / "ema.safetensors")
    try:
        p = coach_cli("predict", str(ema_run.dir), str(tmp_path / "x.npz"), "--weights", "ema")
        assert p.returncode == 2 and "ema.safetensors: no such weights; available: ['best', 'final']" in p.stderr
    finally:
        (tmp_path / "ema.safetensors").rename(ema_run.dir / "weights" / "ema.safetensors")


def test_train_check_runs_the_checklist_first(tmp_path):
    d = tmp_path / "r"
    p = coach_cli("train", "--set", *SMALL, "train.epochs=1", "--check", "--run-dir", str(d))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.index("6. LR range test suggests") < p.stdout.index("status: completed")  # check, then train
    check = json.loads((d / "check.json").read_text())
    assert {"data", "init", "initial_loss", "gradcheck", "overfit", "lr_range"} <= set(check["steps"])
    page = (d / "report.html").read_text()
    assert "<h2>coach check</h2>" in page and 'alt="lr range" src="data:image/png;base64,' in page


def _popen(*args):
    return subprocess.Popen([sys.executable, "-m", "coach", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_metrics(run_dir, proc, timeout=120):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = run_dir / "metrics.jsonl"
        if log.exists() and log.read_text().count("\n") >= 30:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    raise AssertionError("the run did not start in time")


LONG = SMALL + ["train.epochs=400", "train.log_every=1", "train.checkpoint_every=10"]


def test_sigterm_checkpoints_and_exits_0(tmp_path):
    p = _popen("train", "--set", *LONG, "--run-dir", str(tmp_path / "r"))
    _wait_for_metrics(tmp_path / "r", p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and f"coach train --resume {tmp_path / 'r'}" in out and "Traceback" not in out
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stop_reason"] == "interrupted"


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path):
    p = _popen("train", "--set", *LONG, "--run-dir", str(tmp_path / "r"))
    _wait_for_metrics(tmp_path / "r", p)
    p.send_signal(signal.SIGINT)  # the first: stop at the next step, checkpoint, then write the report
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("interrupted: resume with"):
            break
    p.send_signal(signal.SIGINT)  # the second, while the report is being written: out at once
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130 and "coach: aborted" in out and "Traceback" not in out, "".join(seen) + out
    assert "report:" not in out and "status: interrupted" in "".join(seen)
    assert json.loads((tmp_path / "r/summary.json").read_text())["status"] == "interrupted"  # kept by the first


def test_a_model_at_chance_fails_loudly(tmp_path):
    # one epoch of ~10 Adam steps at 1e-3: validation accuracy stays within noise of 1/10
    p = coach_cli("train", "--set", "data.name=digits", "model.name=mlp", "train.epochs=1", "train.progress=false",
                  "--out", str(tmp_path / "r"))
    assert p.returncode == 3, p.stdout + p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("coach: failed: the final model is no better than chance: validation accuracy")
    page = (tmp_path / "r" / "report.html").read_text()
    body = page[page.index("<body>"):]
    assert body.index("This model learned nothing usable") < body.index("<h2>Findings</h2>")
    assert "at_chance" in page
    # the same recipe trained long enough is not flagged
    p = coach_cli("train", "--set", "data.name=digits", "model.name=mlp", "train.epochs=3", "optim.lr=0.01",
                  "train.progress=false", "--out", str(tmp_path / "ok"))
    assert p.returncode == 0 and "failed" not in p.stderr
