"""The CLI's own decisions, and commands as a person runs them (in a subprocess): evaluate on the
test split, predict with chosen weights, train --check, SIGTERM and a second Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import coach
from tests.conftest import side_by_side
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


def coach_clis(*commands, timeout=300):
    """Independent `coach` commands side by side, as finished processes."""
    return side_by_side(*[[sys.executable, "-m", "coach", *args] for args in commands], timeout=timeout, cwd=ROOT,
                        env=ENV)


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
    *done, p = coach_clis(*[("evaluate", str(ema_run.dir), "--split", split) for split in ("test", "val", "train")])
    for (split, part), q in zip((("test", data.test), ("val", data.val)), done):
        assert q.returncode == 0 and f"(split: {split})" in q.stdout, q.stderr
        rows = json.loads((ema_run.dir / f"evaluation-{split}.json").read_text())["rows"]
        assert rows[0]["acc"] == pytest.approx(evaluate_model(best, part)["acc"])
    assert len(data.test) != len(data.val)  # so the two splits cannot be mistaken for each other
    assert p.returncode == 2 and "--split: invalid choice: 'train' (choose from 'val', 'test')" in p.stderr


def test_predict_uses_the_weights_asked_for(ema_run, tmp_path):
    data = coach.load_data(ema_run.config.data, ema_run.config.seed)
    x = data.val.x[:64]
    np.savez(tmp_path / "x.npz", x=x.numpy())
    probs = {}
    *done, p = coach_clis(*[("predict", str(ema_run.dir), str(tmp_path / "x.npz"), "--weights", w, "--json")
                            for w in ("ema", "final", "best")],
                          ("predict", str(ema_run.dir), str(tmp_path / "x.npz"), "--weights", "swa"))
    assert p.returncode == 2 and "--weights: invalid choice: 'swa' (choose from 'best', 'final', 'ema')" in p.stderr
    for w, p in zip(("ema", "final", "best"), done):
        assert p.returncode == 0, p.stderr
        rows = json.loads(p.stdout)
        model = ema_run.load_model(w).eval()
        with torch.no_grad():
            expected = model(x).softmax(1)
        assert [r["index"] for r in rows] == expected.argmax(1).tolist(), w
        assert [r["probability"] for r in rows] == pytest.approx(expected.max(1).values.tolist(), abs=1e-5)
        probs[w] = [r["probability"] for r in rows]
    assert probs["ema"] != probs["final"]  # different weights, different answers
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
    # the second signal is sent as soon as the first has been honoured (summary.json says
    # "interrupted"), while the report is still to be written: it must cut that short
    run = tmp_path / "r"
    p = _popen("train", "--set", *LONG, "--run-dir", str(run))
    _wait_for_metrics(run, p)
    p.send_signal(signal.SIGINT)  # the first: stop at the next step, checkpoint, summary, then the report
    summary = run / "summary.json"
    while p.poll() is None and not (summary.exists() and '"interrupted"' in summary.read_text()):
        time.sleep(0.002)
    p.send_signal(signal.SIGINT)  # the second: out at once
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130 and "coach: aborted" in out and "Traceback" not in out, out
    assert "report:" not in out
    assert json.loads(summary.read_text())["status"] == "interrupted"  # kept by the first


def test_a_model_at_chance_fails_loudly(tmp_path):
    # one epoch of ~10 Adam steps at 1e-3: validation accuracy stays within noise of 1/10
    p, ok = coach_clis(("train", "--set", "data.name=digits", "model.name=mlp", "train.epochs=1",
                        "train.progress=false", "--out", str(tmp_path / "r")),
                       ("train", "--set", "data.name=digits", "model.name=mlp", "train.epochs=3", "optim.lr=0.01",
                        "train.progress=false", "--out", str(tmp_path / "ok")))
    assert p.returncode == 3, p.stdout + p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("coach: failed: the final model is no better than chance: validation accuracy")
    page = (tmp_path / "r" / "report.html").read_text()
    body = page[page.index("<body>"):]
    assert body.index("This model learned nothing usable") < body.index("<h2>Findings</h2>")
    assert "at_chance" in page
    assert ok.returncode == 0 and "failed" not in ok.stderr  # the same recipe trained long enough is not flagged


def test_output_when_piped_is_lines_and_quiet_is_the_result(tmp_path):
    piped, quiet, check = coach_clis(
        ("train", "--set", *SMALL[:-2], "optim.lr=0.01", "train.epochs=3", "--out", str(tmp_path / "r")),
        ("train", "--set", *SMALL[:-2], "optim.lr=0.01", "train.epochs=3", "--quiet", "--out", str(tmp_path / "q")),
        ("check", "--set", *SMALL, "--probe-steps", "10"))
    p = piped
    assert p.returncode == 0, p.stderr
    epochs = [ln for ln in p.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 3 and epochs[-1].startswith("epoch 3/3  train loss")  # one line per epoch
    assert "\r" not in p.stdout + p.stderr  # no bar redrawn into a log
    assert all(len(tok) <= 8 for ln in epochs for tok in ln.split())  # numbers for people, not 0.12345678901
    p = quiet
    assert p.returncode == 0 and not any(ln.startswith("epoch ") for ln in p.stdout.splitlines())
    assert p.stdout.splitlines()[0].startswith("run: ") and "report: " in p.stdout
    p = check
    lines = p.stdout.splitlines()
    assert [ln[:2] for ln in lines[:6]] == ["1.", "2.", "3.", "4.", "5.", "6."], p.stdout  # each step as it ends
    assert "\r" not in p.stdout + p.stderr


def test_durations_take_units_and_refuse_bare_numbers(tmp_path):
    from coach.config import parse_duration
    assert [parse_duration(v, bare_seconds=False) for v in ("90s", "20m", "1.5h", "1h30m", "2m05s")] == \
        [90, 1200, 5400, 5400, 125]
    assert parse_duration(45) == 45.0  # a config file's number is seconds (train.time_budget: 45)
    for bad, says in (("1min", "'1min' is not a duration"), ("1", "'1' is not a duration with a unit")):
        p = coach_cli("autopilot", "--data", "digits", "--budget", bad, "--out", str(tmp_path / "a"))
        assert p.returncode == 2 and says in p.stderr and "90s, 20m, 1.5h or 1h30m" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and not (tmp_path / "a").exists()


def test_one_vocabulary_out_and_any_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    p, nothing, version = coach_clis(("check", "--set", *SMALL, "--probe-steps", "10", "--out", str(tmp_path / "c")),
                                     ("report", str(tmp_path / "x")), ("--version",))
    assert p.returncode in (0, 1) and (tmp_path / "c" / "report.html").exists(), p.stderr
    assert nothing.returncode == 2 and "not a coach folder" in nothing.stderr
    assert version.stdout.strip() == f"coach {coach.__version__}"
    p, held = coach_clis(("report", str(tmp_path / "c")),  # a check result is a coach folder too
                         ("evaluate", str(tmp_path / "c")))
    assert held.returncode == 2 and "a check folder holds no model" in held.stderr
    assert p.returncode == 0 and p.stdout.strip() == str(tmp_path / "c" / "report.html")
    page = (tmp_path / "c" / "report.html").read_text()
    assert "<h2>Findings</h2>" in page and 'alt="lr range" src="data:image/png;base64,' in page
    from coach.cli import build_parser
    for command in ("train", "search", "transfer", "check", "autopilot"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "--out DIR" in capsys.readouterr().out, command
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["search", "--strategy", "bayes"])
    assert e.value.code == 2 and "invalid choice: 'bayes' (choose from 'random', 'grid', 'tpe', 'coarse-to-fine')" \
        in capsys.readouterr().err


def test_data_path_alone_decides_the_source(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(3000) % 3
    np.savez(tmp_path / "d.npz", x=(rng.normal(size=(3000, 4)) + 2 * y[:, None]).astype(np.float32), y=y)
    p, refused = coach_clis(("train", "--set", f"data.path={tmp_path / 'd.npz'}", "model.name=mlp", "train.epochs=2",
                             "optim.lr=0.01", "--out", str(tmp_path / "r")),
                            ("train", "--set", f"data.path={tmp_path / 'd.npz'}", "data.name=mnist",
                             "--out", str(tmp_path / "x")))
    assert p.returncode == 0, p.stderr
    cfg = coach.Run.open(tmp_path / "r").config
    assert cfg.data.name == "npz" and coach.Run.open(tmp_path / "r").spec["num_classes"] == 3
    p = refused
    assert p.returncode == 2 and "is a file but data.name=mnist" in p.stderr


SEARCH = """
data: {name: digits}
model: {name: mlp, width: 32, norm: none}
train: {batch_size: 16, epochs: 15, log_every: 1}
search: {optim.lr: "loguniform(1e-3, 1e-1)"}
"""


def test_ctrl_c_stops_a_search_and_the_cut_trial_runs_again(tmp_path):
    import optuna
    sweep = tmp_path / "sw"
    (tmp_path / "search.yaml").write_text(SEARCH)
    p = _popen("search", str(tmp_path / "search.yaml"), "--trials", "2", "--pruner", "none", "--out", str(sweep))
    _wait_for_metrics(sweep / "trials" / "coach-0000", p)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "Traceback" not in out, out
    assert "trial 1 was cut short" in out and f"--out {sweep}" in out and "interrupted: resume with `coach" in out
    from coach.sweep.engine import open_storage
    study = optuna.load_study(study_name="coach", storage=open_storage(None, sweep))
    cut = study.trials[0]
    assert cut.state.name == "FAIL" and cut.user_attrs["status"] == "interrupted"  # neither counted nor best
    assert len(study.trials) == 1  # it stopped: no next trial began
    # the printed command continues: the cut trial runs again with its parameters, then the rest
    again = out.split("resume with `", 1)[1].split("`", 1)[0].split()[1:]
    p = coach_cli(*again, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    study = optuna.load_study(study_name="coach", storage=open_storage(None, sweep))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2 and any(t.params == cut.params and t.user_attrs.get("retry_of") == 0 for t in done)
    summary = json.loads((sweep / "sweep.json").read_text())
    assert summary["best"]["number"] != 0


def test_ctrl_c_in_the_autopilot_prints_its_resume_line(tmp_path):
    import time
    out = tmp_path / "ap"
    p = _popen("autopilot", "--data", "digits", "--budget", "60s", "--out", str(out))
    deadline = time.time() + 120
    while not (out / "state.json").exists() or "cost" not in read_state(out):
        assert p.poll() is None and time.time() < deadline, p.stdout.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "Traceback" not in text, text
    assert f"interrupted: resume with `coach autopilot --resume {out}`" in text
    assert not (out / "result.json").exists() and {"setup", "cost"} <= set(read_state(out))  # stages kept


def read_state(out):
    try:
        return json.loads((out / "state.json").read_text())["stages"]
    except (json.JSONDecodeError, KeyError):
        return {}


@pytest.mark.slow
def test_pip_install_into_a_fresh_environment(tmp_path):
    """`pip install .` into a new venv: the wheel installs, its declared dependencies are met by what
    is there (the dependencies are borrowed from this environment instead of downloaded), psycopg is
    an extra, and the `coach` script runs."""
    import sysconfig
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr
    built = next((tmp_path / "dist").glob("coach-*.whl"))
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp_path / "v")], check=True, timeout=300)
    vpy = tmp_path / "v" / "bin" / "python"
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    p = subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(built)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    from importlib.metadata import Distribution
    requires = Distribution.at(next(Path(site).glob("coach-*.dist-info"))).requires
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("torch") for r in core) and not any(r.startswith("psycopg") for r in core)
    assert any(r.startswith("psycopg") and 'extra == "postgres"' in r for r in requires)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(tmp_path / "v" / "bin" / "coach"), "--version"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"coach {coach.__version__}", p.stderr
    p = subprocess.run([str(vpy), "-c", "import coach, sys; print(coach.__file__)"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=120)
    assert p.stdout.strip().startswith(site)  # the installed copy, not this checkout
    p = subprocess.run([str(vpy), "-m", "pip", "check"], capture_output=True, text=True, env=env, timeout=120)
    assert "coach" not in p.stdout, p.stdout  # every dependency coach declares is satisfied


def test_transfer_writes_its_report(ema_run, tmp_path):
    p = coach_cli("transfer", "--from", str(ema_run.dir), "--mode", "linear", "--set", "data.name=digits",
                  "data.classes=[5, 6, 7, 8, 9]", "train.epochs=3", "optim.lr=0.01", "--out", str(tmp_path / "t"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "t" / "report.html").exists() and f"report: {tmp_path / 't' / 'report.html'}" in p.stdout
    p = coach_cli("transfer", "--from", str(ema_run.dir), "--mode", "everything")
    assert p.returncode == 2 and "invalid choice: 'everything'" in p.stderr


def test_a_new_run_never_overwrites_one(ema_run, capsys):
    from coach.cli import main
    before = (ema_run.dir / "weights" / "final.safetensors").read_bytes()
    assert main(["train", "--set", *SMALL, "train.epochs=1", "--out", str(ema_run.dir)]) == 2
    assert f"--out {ema_run.dir} already holds a run: continue it with `coach train --resume {ema_run.dir}`" \
        in capsys.readouterr().err
    assert (ema_run.dir / "weights" / "final.safetensors").read_bytes() == before
