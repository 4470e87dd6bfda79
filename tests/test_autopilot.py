"""The autopilot end to end on tiny budgets, its resume, its stop on hopeless data, and predict."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coach.autopilot import autopilot, ema_decay_for
from coach.errors import UserError
from coach.predict import predict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("ap") / "digits"
    return autopilot("digits", budget=45, out=out), out


def test_end_to_end_on_digits(session):
    result, out = session
    state = json.loads((out / "state.json").read_text())
    stages = list(state["stages"])
    assert stages == ["setup", "check", "search", "curves", "final", "choose", "test"]
    times = [state["stages"][s]["finished_at"] for s in stages]
    assert times == sorted(times)
    assert result["test_acc"] > 0.85 and Path(result["model_dir"], "weights", "best.safetensors").exists()
    page = (out / "report.html").read_text()
    assert "test accuracy" in page and "Coarse-to-fine search" in page and (out / "sweep" / "report.html").exists()
    assert all(state["stages"][s]["decision"] for s in stages)  # every decision has its reason


def test_resume_continues_without_redoing(session, tmp_path):
    _, out = session
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    state = json.loads((copy / "state.json").read_text())
    for stage in ("choose", "test"):  # as if interrupted after the final training
        del state["stages"][stage]
    (copy / "state.json").write_text(json.dumps(state))
    before = {k: v["finished_at"] for k, v in state["stages"].items()}
    result = autopilot("ignored", resume=copy)
    after = json.loads((copy / "state.json").read_text())["stages"]
    assert all(after[k]["finished_at"] == v for k, v in before.items())  # earlier stages not redone
    assert "test" in after and result["test_acc"] > 0.85


def test_stops_with_an_explanation_on_random_labels(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez(tmp_path / "random.npz", x=d.images / 16.0, y=np.random.default_rng(0).permutation(d.target))
    result = autopilot(str(tmp_path / "random.npz"), budget=30, out=tmp_path / "ap")
    assert result["stopped"] and "labels" in result["stopped"]


def test_predict_images_and_npz(session, tmp_path):
    _, out = session
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    rows = predict(out, tmp_path)
    assert len(rows) == 3 and all(0 <= r["probability"] <= 1 and r["class"] in [str(c) for c in range(10)]
                                  for r in rows)
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 8, 8), np.float32))
    assert len(predict(out, tmp_path / "x.npz")) == 4
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 5, 5), np.float32))
    with pytest.raises(UserError, match="do not fit this model"):
        predict(out, tmp_path / "bad.npz")
    p = subprocess.run([sys.executable, "-m", "coach", "predict", str(out), str(tmp_path / "x.npz"), "--json"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 4


def test_ema_window_follows_run_length():
    assert ema_decay_for(100) == 0.9 and 0.99 < ema_decay_for(5000) < 0.999
    p = subprocess.run([sys.executable, "-m", "coach", "autopilot", "--data", "nothing-like-this"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--data" in p.stderr
