"""Data held in memory (coach.data.memory): the same checks, split and preprocessing as a file."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import coach
from coach.data.memory import as_data
from coach.errors import UserError

X, Y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8)
CFG = coach.make_config({"model": {"name": "mlp", "width": 32}, "optim": {"lr": 0.01},
                         "train": {"epochs": 1, "batch_size": 64, "progress": False}})


def test_arrays_split_and_preprocess_exactly_as_the_same_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    from_file = coach.load_data(CFG.replace(**{"data.path": str(tmp_path / "d.npz")}).data)
    data, cfg = as_data((X, Y), CFG)
    assert cfg.data.name == "arrays" and data.classes == from_file.classes and data.kind == "image"
    for a, b in ((data.train, from_file.train), (data.val, from_file.val), (data.test, from_file.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(data.preprocess(data.train.x[:5]), from_file.preprocess(from_file.train.x[:5]))


def test_tensors_dict_dataset_and_loader_give_the_same_data():
    ref, _ = as_data((X, Y), CFG)
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    for obj in ((tx, ty), {"x": tx, "y": ty}, TensorDataset(tx, ty), DataLoader(TensorDataset(tx, ty), batch_size=100)):
        data, _ = as_data(obj, CFG)
        assert torch.equal(data.train.x, ref.train.x) and torch.equal(data.test.y, ref.test.y), type(obj)


def test_a_given_test_split_and_class_names_are_used():
    data, _ = as_data({"x": X[:1500], "y": Y[:1500], "x_test": X[1500:], "y_test": Y[1500:],
                       "classes": [f"digit {i}" for i in range(10)]}, CFG)
    assert len(data.test) == len(X) - 1500 and data.classes[3] == "digit 3"


@pytest.mark.parametrize("obj, says", [
    ((X, Y[:-1]), "x has 1797 examples but y has 1796"),
    ((np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), Y), "NaN or infinite values in 1 examples"),
    ({"x": X, "y": Y, "classes": ["a", "b"]}, "label 2 out of range; allowed 0..1"),
    ((X, Y, X), "a tuple of 3 items"),
    ({"inputs": X, "y": Y}, "a dict needs keys x and y"),
    (42, "int is not data coach can read"),
    ("digits", "a source name or a path goes in the config"),
    (TensorDataset(torch.from_numpy(X)), "coach needs (input, label) pairs"),
])
def test_bad_data_in_memory_is_a_clear_error(obj, says):
    with pytest.raises(UserError, match=None) as e:
        as_data(obj, CFG)
    assert says in str(e.value), str(e.value)


def test_fit_and_check_take_arrays_and_the_run_says_so(tmp_path):
    run = coach.fit(CFG, run_dir=tmp_path / "run", data=(X, Y))
    assert run.config.data.name == "arrays" and run.summary["final"]["val_acc"] > 0.5
    assert "name: arrays" in (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(UserError, match="passed in memory"):  # resuming needs the arrays again
        coach.load_data(run.config.data)
    result = coach.check(CFG, data=(X, Y), probe_steps=10, range_steps=20, overfit_steps=60)
    assert result.steps["data"]["train"] == len(run.data.train)


def test_run_history_is_plain_rows_one_per_evaluation(tmp_path):
    run = coach.fit(CFG.replace(**{"train.epochs": 2}), run_dir=tmp_path / "run", data=(X, Y))
    rows = run.history
    evals = [m for m in run.metrics() if m.get("type") == "eval"]
    assert len(rows) == len(evals) >= 2 and all("type" not in r for r in rows)
    assert [r["val_acc"] for r in rows] == [m["val_acc"] for m in evals] and rows[-1]["epoch"] == pytest.approx(2)
    assert coach.Run.open(tmp_path / "run").history == rows  # read back from the folder
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install pandas"):
            run.history_frame()
    else:
        assert list(run.history_frame()["val_acc"]) == [r["val_acc"] for r in rows]


def test_the_readme_example_runs(tmp_path):
    """README's in-memory example, as a user would run it (in a fresh process, in an empty folder)."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- example: in-memory .*?-->\n```python\n(.*?)```", readme, re.S).group(1)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    verdict = next(ln for ln in p.stdout.splitlines() if ln.startswith(("True", "False")))
    assert verdict.startswith("True"), p.stdout  # digits with an MLP: a healthy setup
    assert float(p.stdout.splitlines()[-1]) > 0.9 and list(tmp_path.glob("runs/*/config.yaml"))
