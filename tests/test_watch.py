"""coach.watch on a hand-written PyTorch loop: the same monitors, diagnosis and report."""
import json

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import coach
from coach.errors import UserError

X, Y = load_digits(return_X_y=True)
X = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-6), dtype=torch.float32)
Y = torch.tensor(Y)


def hand_loop(lr, out=None, epochs=3, every=10):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with coach.watch(model, opt, out=out, every=every, num_classes=10) as w:
        for _ in range(epochs):
            for i in range(0, 1500, 50):
                loss = F.cross_entropy(model(X[i:i + 50]), Y[i:i + 50])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
            with torch.no_grad():
                w.evaluate(val_acc=(model(X[1500:]).argmax(1) == Y[1500:]).float().mean().item())
    return w


def test_a_healthy_hand_written_loop_gets_no_warning(tmp_path):
    w = hand_loop(0.05, tmp_path / "mine")
    assert not [f for f in w.findings if f.severity != "info"], [str(f) for f in w.findings]
    records = [json.loads(ln) for ln in (tmp_path / "mine" / "monitors.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[0]["acts"]  # the first batch the model saw is the probe
    assert [r["step"] for r in records[1:]] == list(range(10, 91, 10))
    assert set(records[1]["layers"]) == {"0.weight", "2.weight", "4.weight"}
    assert all(1e-5 < v["update_ratio"] < 1 and sum(v["grad_hist"]) > 0 for v in records[1]["layers"].values())
    page = (tmp_path / "mine" / "report.html").read_text()
    assert "coach watch: Sequential" in page and 'alt="update ratios" src="data:image/png;base64,' in page


def test_an_lr_far_too_high_in_a_hand_written_loop_is_lr_too_high():
    w = hand_loop(2.0)  # the loss shoots to ~1e4, then the dead ReLUs leave it flat near log 10
    assert "lr_too_high" in {f.code for f in w.findings if f.severity in ("warning", "error")}, \
        [str(f) for f in w.findings]


def test_watching_changes_nothing_in_the_loop():
    a = hand_loop(0.05, every=1).model  # every step sampled: the most the monitors could disturb
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        for i in range(0, 1500, 50):
            loss = F.cross_entropy(model(X[i:i + 50]), Y[i:i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))


def test_bad_arguments_are_clear_errors(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(UserError, match="optimizer must be a torch.optim.Optimizer"):
        coach.watch(model, "adam")
    with pytest.raises(UserError, match="every=0"):
        coach.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), every=0)
    hand_loop(0.05, tmp_path / "r", epochs=1)
    with pytest.raises(UserError, match="already holds a run"):
        with coach.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), out=tmp_path / "r"):
            pass


def test_the_readme_example_runs(tmp_path):
    """README's raw-loop example, as a user would run it: the LR far too high is found, and the
    run folder holds the report."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- example: watch .*?-->\n```python\n(.*?)```", readme, re.S).group(1)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "[warning] lr_too_high: the training loss blew up" in p.stdout, p.stdout
    assert (tmp_path / "runs" / "mine" / "report.html").exists()
