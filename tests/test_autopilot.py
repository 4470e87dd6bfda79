"""The autopilot end to end on tiny budgets, its resume, its stop on hopeless data, and predict."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coach.autopilot import autopilot, ema_decay_for, final_epochs, plan_search, react
from coach.config import make_config
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
    # budget accounting: the session ends within ~5% of its budget (plus a little for the report),
    # and the final training was planned to fill the time the earlier stages left
    assert result["time"] <= 45 * 1.05 + 3
    assert state["stages"]["search"]["finished_at"] <= 45 * 0.55
    assert state["stages"]["final"]["epochs"] >= 5


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


def test_search_plan_fits_the_budget():
    # cheap data: long trials (5 epochs), all of the data, trials capped
    cheap = plan_search(budget=75, epoch_seconds=0.4, n_train=4000)
    assert cheap["epochs"] == 5 and cheap["limit"] is None and 20 <= cheap["trials"] <= 48
    # 60k images at 71 s/epoch in 500 s: one-epoch trials on a subset, at least 6 of them
    big = plan_search(budget=500, epoch_seconds=71, n_train=54000)
    assert big["epochs"] == 1 and 2000 <= big["limit"] < 54000 and big["trials"] >= 6
    expected_cost = 1.5 * big["trials"] * (71 * big["limit"] / 54000 + 0.5) / 1.3  # ASHA stops ~1/3 early
    assert abs(expected_cost - 500) / 500 < 0.1
    # tiny data is never cut down
    assert plan_search(budget=5, epoch_seconds=10, n_train=1500)["limit"] is None
    assert final_epochs(100, 0.5) == 235 and final_epochs(100, 1000) == 1 and final_epochs(1e6, 1) == 300


def test_reactions_to_the_curves():
    cfg = make_config({"model": {"name": "convnet", "width": 32}, "regularize": {"dropout": 0.2}})
    over, why = react({"overfitting"}, cfg, "image")
    assert over == {"regularize.dropout": 0.3, "augment.crop_padding": 2} and "overfits" in why[0]
    over, why = react({"overfitting"}, cfg, "vector")
    assert over == {"regularize.dropout": 0.3}
    over, why = react({"underfitting"}, cfg, "signal")
    assert over == {"model.width": 64} and "underfits" in why[0]
    assert react(set(), cfg, "image") == ({}, [])


def _image_folder(root: Path) -> None:
    """Three classes a small convnet can tell apart: horizontal bars, vertical bars, a blob."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("horizontal", "vertical", "blob")):
        (root / name).mkdir(parents=True)
        for i in range(40):
            img = rng.random((12, 12)) * 0.3
            k = rng.integers(2, 10)
            if c == 0:
                img[k, :] = 1.0
            elif c == 1:
                img[:, k] = 1.0
            else:
                img[k - 2:k + 2, 3:7] = 1.0
            Image.fromarray((img * 255).astype(np.uint8)).save(root / name / f"{i}.png")


def test_end_to_end_on_an_image_folder(tmp_path):
    _image_folder(tmp_path / "shapes")
    result = autopilot(str(tmp_path / "shapes"), budget=25, out=tmp_path / "ap")
    state = json.loads((tmp_path / "ap" / "state.json").read_text())
    assert state["stages"]["setup"]["data"]["kind"] == "image" and "2-D convnet" in state["stages"]["setup"]["decision"]
    assert result["test_acc"] > 0.6 and (tmp_path / "ap" / "report.html").exists()
    assert result["time"] <= 25 * 1.05 + 3
    rows = predict(tmp_path / "ap" / "final", tmp_path / "shapes" / "vertical")
    assert len(rows) == 40 and sum(r["class"] == "vertical" for r in rows) >= 20


def test_end_to_end_on_an_npz(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez(tmp_path / "digits.npz", x=(d.images / 16.0).reshape(len(d.images), -1), y=d.target)
    result = autopilot(str(tmp_path / "digits.npz"), budget=20, out=tmp_path / "ap")
    state = json.loads((tmp_path / "ap" / "state.json").read_text())
    assert state["stages"]["setup"]["data"]["kind"] == "vector" and "MLP" in state["stages"]["setup"]["decision"]
    assert result["test_acc"] > 0.85 and result["time"] <= 20 * 1.05 + 3
