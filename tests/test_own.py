"""Your own nn.Module (coach.nn.own) through fit, check, predict, evaluate and the autopilot, on
data held in memory; and what a notebook shows (coach.notebook's _repr_html_)."""
import gc
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import coach
from coach.errors import UserError
from coach.train import Run

from tests.conftest import chromium_page, needs_chromium

X, Y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8).astype("float32")  # raw pixel counts 0..16: coach standardizes them


def mlp(hidden: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def conv(width: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(width * 16, num_classes))


def test_sequential_on_arrays_fit_predict_and_the_saved_program(tmp_path):
    net = mlp()
    before = net[1].weight.detach().clone()
    run = coach.fit(net, (X, Y), epochs=4, progress=False)
    folder = run.dir
    assert folder.exists() and run.config.model.name == "module" and run.spec["module"] == "Sequential"
    assert not torch.equal(before, net[1].weight), "the module itself is trained (in place, as Keras does)"
    # coach's preprocessing sits in front of the module: run.model takes raw inputs
    x = torch.from_numpy(X[:64])
    pre = run.model.preprocess
    assert torch.allclose(run.model(x), net(pre(x)))
    assert abs(pre(torch.from_numpy(X[:1000])).mean().item()) < 0.2  # standardized (train split's statistics)
    probs = run.predict(X[-300:], weights="final")
    assert probs.shape == (300, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == Y[-300:]).mean() > 0.8
    # nothing stays on disk unless asked: the run's temporary directory goes with the Run
    saved = run.save(tmp_path / "kept")
    del run
    gc.collect()
    assert not folder.exists()
    # in another process, without the user's code: the torch.export program and the chosen weights
    reopened = Run.open(saved.dir)
    assert reopened.spec["exported"] is True
    again = Run.open(saved.dir).predict(X[-300:], weights="final")
    assert np.allclose(again, probs, atol=1e-5)
    np.savez(tmp_path / "x.npz", x=X[-5:])
    out = subprocess.run([sys.executable, "-m", "coach", "predict", str(saved.dir), str(tmp_path / "x.npz"),
                          "--weights", "final"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [int(line.split(": ")[1].split()[0]) for line in out.stdout.splitlines()] == list(probs[-5:].argmax(1))


def test_evaluate_and_a_fresh_instance_load_a_saved_own_run(tmp_path):
    run = coach.fit(mlp(), (X, Y), run_dir=tmp_path / "r", epochs=2, progress=False)
    from coach.data.memory import as_data
    data, _ = as_data((X, Y), run.config)
    from coach.evaluate import evaluate_runs
    result = evaluate_runs([tmp_path / "r"], data=data)
    assert result["rows"][0]["acc"] == pytest.approx(run.summary["best"]["value"], abs=1e-6)
    # a fresh instance of the module (trainable, unlike the exported program) loads the same weights
    fresh = Run.open(tmp_path / "r").load_model("best", model=mlp())
    assert isinstance(fresh.net, nn.Sequential)
    assert np.allclose(Run.open(tmp_path / "r").predict(X[:50]), torch.softmax(fresh(torch.from_numpy(X[:50])), 1)
                       .detach().numpy(), atol=1e-5)


class Branchy(nn.Module):
    """Python control flow on the data: torch.export cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.a(x) if x.sum() > 0 else self.b(x)


def test_a_module_torch_export_cannot_trace_is_saved_without_the_program(tmp_path):
    run = coach.fit(Branchy(), (X, Y), run_dir=tmp_path / "r", epochs=1, progress=False)
    spec = Run.open(tmp_path / "r").spec
    assert spec["exported"] is False and spec["export_error"]
    with pytest.raises(UserError, match="needs\\s+the module"):
        Run.open(tmp_path / "r").load_model()
    assert Run.open(tmp_path / "r").load_model(model=Branchy())(torch.from_numpy(X[:3])).shape == (3, 10)
    assert run.predict(X[:3]).shape == (3, 10)  # in this process the trained module itself is there


def test_check_on_your_own_module_leaves_it_untouched_and_finds_planted_faults():
    net = mlp()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    healthy = coach.check(net, (X, Y), probe_steps=30, range_steps=30, overfit_steps=200)
    assert not [f for f in healthy.findings if f.severity != "info"], healthy.findings
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert healthy.config["model"]["name"] == "module"
    high = coach.check(mlp(), (X, Y), lr=10.0, probe_steps=30, range_steps=30, overfit_steps=100)
    assert "lr_too_high" in {f.code for f in high.findings if f.severity == "error"}


def test_a_factory_gets_the_capacity_control_an_instance_cannot():
    # 2 hidden units cannot memorize 100 digits; a factory that takes `width` builds the wider control
    small = coach.check(lambda width: mlp(width), (X, Y), width=2, probe_steps=20, range_steps=20, overfit_steps=200)
    f = next(f for f in small.findings if f.code == "cannot_overfit")
    assert f.evidence["capacity"] is True and "model.width=" in f.message
    instance = coach.check(mlp(2), (X, Y), probe_steps=20, range_steps=20, overfit_steps=200)
    f = next(f for f in instance.findings if f.code == "cannot_overfit")
    assert f.evidence["capacity"] is False and "wider" not in f.evidence


@pytest.mark.parametrize("call, message", [
    (lambda: coach.fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), (X, Y), epochs=1),
     r"returned \(8, 7\).*\(8, 10\)"),
    (lambda: coach.fit(nn.Sequential(nn.Linear(3, 10)), (X, Y), epochs=1), "failed on a batch of shape"),
    (lambda: coach.fit(lambda width, depth_of_field: mlp(width), (X, Y)), "depth_of_field"),
    (lambda: coach.fit(mlp(), (X, Y), dropout=0.5), "regularize.dropout=0.5: coach cannot add"),
    (lambda: coach.fit(mlp(), (X, Y), width=128), "model.width=128: coach cannot add"),
    (lambda: coach.check(lambda width: mlp(width), (X, Y), init="xavier"), "model.init=xavier: coach cannot add"),
    (lambda: coach.fit(mlp(), (X, Y), epochz=3), "epochz: no such setting"),
    (lambda: coach.fit(mlp(), (X, Y), name="x"), "ambiguous"),
    (lambda: coach.fit(lambda width: "not a module", (X, Y)), "returned str"),
])
def test_bad_own_models_get_one_clear_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_a_factory_honours_dropout_it_takes():
    seen = []

    def factory(width, dropout):
        seen.append((width, dropout))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 10))

    run = coach.fit(factory, (X, Y), width=16, dropout=0.25, epochs=1, progress=False)
    assert seen == [(16, 0.25)] and run.model.net[3].p == 0.25


def test_autopilot_with_a_factory_on_arrays(tmp_path):
    result = coach.autopilot((X, Y), model=conv, budget=12, quiet=True)
    assert result["test_acc"] > 0.9, result
    final = Run.open(result["model_dir"])
    assert final.config.model.name == "module" and final.spec["module"] == "Sequential"
    assert final.config.data.name == "arrays"
    import json
    state = json.loads((result.out / "state.json").read_text())
    assert state["model"] == "conv" and "your conv" in state["stages"]["setup"]["decision"]
    assert (result.predict(X[-200:]).argmax(1) == Y[-200:]).mean() > 0.9
    kept = result.save(tmp_path / "session")
    if shutil.which("chromium") or shutil.which("chromium-browser"):  # the session's page, as a notebook shows it
        page = tmp_path / "session.html"
        page.write_text(f"<html><body>{result._repr_html_()}<script>window.addEventListener('load',()=>{{const d="
                        "document.querySelector('iframe').contentDocument;document.body.dataset.plots=[...d.images]"
                        ".filter(i=>i.complete&&i.naturalWidth>0).length;document.body.dataset.images=d.images.length;"
                        "});</script></body></html>")
        seen = chromium_page(page, tmp_path)
        assert seen["images"] >= 4 and seen["plots"] == seen["images"], seen
    out = subprocess.run([sys.executable, "-m", "coach", "predict", str(kept.out), str(_npz(tmp_path))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 5, out.stderr
    # resuming needs the same data and model passed again
    with pytest.raises(UserError, match="pass the same data again"):
        coach.autopilot("digits", resume=kept.out)
    with pytest.raises(UserError, match="pass it again"):
        coach.autopilot((X, Y), resume=kept.out)
    with pytest.raises(UserError, match="budget: 'soon' is not a duration"):
        coach.autopilot((X, Y), model=conv, budget="soon")


def _npz(tmp_path):
    np.savez(tmp_path / "five.npz", x=X[:5])
    return tmp_path / "five.npz"


@needs_chromium
def test_notebook_objects_render_in_chromium(tmp_path):

    run = coach.fit(mlp(), (X, Y), epochs=2, progress=False)
    result = coach.check(mlp(), (X, Y), lr=10.0, probe_steps=20, range_steps=20, overfit_steps=60)
    for name, obj, finding in [("run", run, None), ("check", result, "lr_too_high")]:
        shown = obj._repr_html_()
        assert shown.startswith("<iframe")
        page = tmp_path / f"{name}.html"
        # a notebook's output area: the object's HTML, and a script that reads what its frame shows
        page.write_text(f"<html><body>{shown}<script>window.addEventListener('load',()=>{{const d=document."
                        "querySelector('iframe').contentDocument;document.body.dataset.plots=[...d.images].filter("
                        "i=>i.complete&&i.naturalWidth>0).length;document.body.dataset.images=d.images.length;"
                        "document.body.dataset.findings=d.querySelectorAll('.finding').length;});</script></body></html>")
        seen = chromium_page(page, tmp_path)
        assert seen["images"] >= 2 and seen["plots"] == seen["images"], (name, seen)
        if finding:
            assert seen["findings"] >= 1 and finding in shown


def readme_block(name):
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.search(rf"<!-- example: {name} .*?-->\n```python\n(.*?)```", readme, re.S).group(1)


def test_the_readme_notebook_example_runs(tmp_path):
    """README's 5-line notebook example, as a user runs it (a fresh process, an empty folder): it
    leaves nothing on disk."""
    p = subprocess.run([sys.executable, "-c", readme_block("notebook")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    import re
    lines = p.stdout.splitlines()
    findings, test_acc = lines[0], lines[-1]
    trained = next(ln for ln in lines if re.fullmatch(r"[0-9.]+ \[[0-9 ]+\]", ln))  # val_acc, 5 predicted classes
    assert "'warning'" not in findings and "'error'" not in findings  # digits, a small MLP: healthy
    assert float(trained.split()[0]) > 0.9 and float(test_acc) > 0.9
    assert list(tmp_path.iterdir()) == []


def test_search_over_a_factorys_hyperparameters_on_arrays(tmp_path):
    built = []

    def factory(width, dropout):
        built.append((width, dropout))
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 10))

    cfg = coach.make_config({"train": {"epochs": 2, "progress": False},
                             "search": {"model.width": "choice([8, 64])", "regularize.dropout": "uniform(0, 0.5)"}})
    summary = coach.search(cfg, trials=3, data=(X, Y), model=factory, pruner="none")
    trials = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert len(trials) == 3
    # no folder asked for: a temporary sweep, kept by save() (its paths rewritten), gone with the summary
    kept = summary.save(tmp_path / "sweep")
    assert all(Path(t["run_dir"]).is_relative_to(tmp_path / "sweep") and Path(t["run_dir"]).exists()
               for t in kept["trials"]) and (tmp_path / "sweep" / "sweep.json").exists()
    temporary = summary.root
    summary = {k: v for k, v in summary.items()}
    gc.collect()
    assert not temporary.exists()
    # each trial built the module with its own sampled values (the first build: the output check)
    assert built == [(t["params"]["model.width"], t["params"]["regularize.dropout"]) for t in trials]
    assert all(Run.open(t["run_dir"]).config.model.name == "module" for t in kept["trials"])
    with pytest.raises(UserError, match="model.depth: your model does not take it"):
        coach.search(cfg.replace(search={"model.depth": "choice([1, 2])"}), trials=2, sweep_dir=tmp_path / "s2",
                     data=(X, Y), model=factory)
    with pytest.raises(UserError, match="runs one worker"):
        coach.search(cfg, trials=2, sweep_dir=tmp_path / "s3", data=(X, Y), model=factory, workers=2)


def test_dropout_inside_your_module_is_a_regularization_setting_of_the_checks():
    """A module's own dropout layers are turned off (on copies) for the lectures' regularization-off
    run and cut to find how much is too much, as the config's are: dropout 0.95 inside the module is
    named, with the cut; 0.3 is not too strong."""
    torch.manual_seed(0)
    strong = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.95), nn.Linear(128, 10))
    result = coach.check(strong, (X, Y), probe_steps=20, range_steps=20)
    f = next(f for f in result.findings if f.code == "regularization_too_strong")
    assert "the dropout in your module (p up to 0.95)" in f.message and f.evidence["cut_by"] == 10
    assert "cut the dropout in your module by about 10x" == f.advice
    assert not [g for g in result.findings if g.code in ("cannot_overfit", "lr_too_low") and g.severity != "info"]
    assert strong[3].p == 0.95  # on copies: the module keeps its dropout
    torch.manual_seed(0)
    mild = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
    assert "regularization_too_strong" not in {g.code for g in coach.check(mild, (X, Y), probe_steps=20,
                                                                           range_steps=20).findings}


def test_autopilot_with_a_module_instance_on_vectors():
    """An instance has one size: the session keeps it (no width set that the module would ignore;
    flat vectors are where the plain recipe's width, 256, differs from the default)."""
    result = coach.autopilot((X.reshape(len(X), -1), Y), model=mlp(), budget=8, quiet=True)
    assert result["test_acc"] > 0.8, result
    assert Run.open(result["model_dir"]).config.model.width == coach.Config().model.width
