"""The run report renders offline in headless Chromium, with its plots."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import coach
from coach.babysit import check
from coach.report import render_run
from coach.train.run import write_json

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


RUN_CFG = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 32}, "optim": {"lr": 0.01},
           "train": {"epochs": 3, "batch_size": 64, "progress": False, "monitor_every": 5}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report") / "run"
    cfg = coach.make_config(RUN_CFG)
    d.mkdir(parents=True)
    write_json(d / "check.json", check(cfg, probe_steps=20).to_dict())
    coach.fit(cfg, run_dir=d)
    return d


def test_report_is_self_contained(run_dir):
    page = render_run(run_dir).read_text()
    for part in ("<h2>Findings</h2>", "<h2>coach check</h2>", 'alt="lr range" src="data:image/png;base64,'):
        assert part in page, part
    assert page.index("<h2>Findings</h2>") < page.index("<h2>coach check</h2>")  # findings first
    for alt in ("per-class accuracy", "confusion matrix", "confident mistakes",  # what the model gets wrong
                "first grads", "final grads"):  # gradient histograms next to the activation histograms
        assert f'alt="{alt}" src="data:image/png;base64,' in page, alt
    assert page.index("<h2>Activations per layer</h2>") < page.index("<h2>Gradients per layer</h2>")
    assert page.count("data:image/png;base64,") >= 10  # + loss, acc, lr, ratios, 2x activations, LR range
    assert not re.search(r"(src|href)=[\"']https?://", page)  # nothing fetched from a network


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    path = render_run(run_dir)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    plots = re.search(r'data-plots="(\d+)"', dom.stdout)
    assert plots and int(plots.group(1)) >= 7, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000


def test_cli_train_writes_report_and_report_command(tmp_path):
    p = subprocess.run([sys.executable, "-m", "coach", "train", "--set", "data.name=digits", "model.name=mlp",
                        "train.epochs=3", "optim.lr=0.01", "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "report.html").exists() and "report:" in p.stdout
    p = subprocess.run([sys.executable, "-m", "coach", "report", str(tmp_path / "r")], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip().endswith("report.html")


def test_confusion_matrix_and_confident_mistakes(tmp_path):
    import numpy as np
    import torch
    from sklearn.metrics import confusion_matrix

    from coach.report.figures import confusion
    from coach.train.run import load_predictions, save_predictions
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert np.array_equal(confusion(pred, y, 4), confusion_matrix(y, pred, labels=range(4)))
    conf = torch.tensor(rng.random(200), dtype=torch.float32)
    x = torch.arange(200.0).view(200, 1)
    save_predictions(tmp_path / "p.npz", torch.tensor(pred), conf, torch.tensor(y), x)
    p = load_predictions(tmp_path / "p.npz")
    wrong = np.flatnonzero(pred != y)
    expected = wrong[np.argsort(-conf.numpy()[wrong], kind="stable")][:24]
    assert np.array_equal(p["mistakes"], expected) and (p["pred"][p["mistakes"]] != p["y"][p["mistakes"]]).all()
    assert np.array_equal(p["mistake_x"][:, 0], expected.astype(np.float32))  # their inputs, for the thumbnails


def test_check_page_shows_gradient_histograms_at_initialization(run_dir, tmp_path):
    from coach.report.check_report import render_check
    shutil.copy(run_dir / "check.json", tmp_path / "check.json")
    page = render_check(tmp_path).read_text()
    steps = json.loads((tmp_path / "check.json").read_text())["steps"]
    cfg = coach.make_config(RUN_CFG)
    model = coach.build_model(cfg.model, (1, 8, 8), 10)
    assert list(steps["init_grads"]) == [n for n, p in model.named_parameters() if p.ndim >= 2]  # every weight
    assert all(sum(g["hist"]) + round(g["zero"] * p.numel()) == p.numel()
               for (n, p) in model.named_parameters() if p.ndim >= 2 for g in [steps["init_grads"][n]])
    for alt in ("init acts", "init grads", "lr range"):
        assert f'alt="{alt}" src="data:image/png;base64,' in page, alt
