"""Hyperparameter search: the space, narrowing, Optuna engine, journal and PostgreSQL workers."""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import coach
from coach.errors import UserError
from coach.sweep import narrow, parse_dim, parse_space, search
from coach.sweep.engine import stage_epochs
from coach.sweep.space import grid_points, quasi_random, too_few_trials
from tests.conftest import chromium_plots, needs_chromium, side_by_side

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
BASE = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 16, "depth": 1, "norm": "none"},
        "train": {"epochs": 2, "batch_size": 64, "progress": False, "monitor_every": 0},
        "search": {"optim.lr": "loguniform(1e-4, 1e-1)", "regularize.dropout": "uniform(0.0, 0.5)"}}


def cfg(**over):
    c = coach.make_config(BASE)
    return c.replace(**over) if over else c


# ------------------------------------------------------------------- the space
def test_parse_and_errors():
    d = parse_dim("optim.lr", "loguniform(1e-4, 1e-1)")
    assert d.log and d.low == 1e-4 and d.high == 0.1
    assert parse_dim("model.activation", "choice([relu, tanh])").values == ("relu", "tanh")
    for expr, msg in [("uniform(0.5, 0.1)", "inverted range"), ("uniform(0.1, 0.1)", "empty or inverted"),
                      ("loguniform(0, 1)", "log range needs low > 0"), ("normal(0, 1)", "not a distribution"),
                      ("int(1.5, 4)", "whole numbers"), ("choice([])", "at least one value")]:
        with pytest.raises(UserError, match=msg):
            parse_dim("optim.lr", expr)
    with pytest.raises(UserError, match="search.optim.lrr: not a usable config key"):
        parse_space({"optim.lrr": "uniform(0, 1)"}, cfg())
    with pytest.raises(UserError, match="search: the config has no search"):
        parse_space({}, cfg())


def test_narrowing_in_log_space():
    d = parse_dim("optim.lr", "loguniform(1e-6, 1e0)")
    nd, note = narrow(d, [3e-3, 1e-2, 5e-3], best=5e-3)
    assert note is None and nd.low < 3e-3 and nd.high > 1e-2
    assert nd.low > 1e-6 and nd.high < 1e0  # narrower than before
    assert (d.to_unit(nd.high) - d.to_unit(nd.low)) >= 0.35 - 1e-9  # never collapses
    nd, note = narrow(d, [1.5e-6, 3e-6], best=1.5e-6)
    assert nd.low < 1e-6 and "low edge" in note  # best at the edge: widened past it
    c = parse_dim("model.activation", "choice([relu, tanh, elu])")
    assert narrow(c, ["relu", "elu"], "relu")[0].values == ("relu", "elu")
    i = parse_dim("model.width", "int(8, 256)")
    ni, _ = narrow(i, [64, 80], 64)
    assert ni.low == int(ni.low) and ni.low <= 64 and ni.high >= 80


def test_grid_points():
    assert grid_points(parse_dim("optim.lr", "loguniform(1e-4, 1e-2)"), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert grid_points(parse_dim("model.width", "grid([8, 16])"), 3) == [8, 16]


# ------------------------------------------------------------------- the engine
def finished(summary):
    return [t for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]


def test_quasi_random_covers_ranges_and_every_choice():
    dims = [parse_dim("optim.lr", "loguniform(1e-5, 1e-1)"), parse_dim("augmentation", "choice([none, a, b])")]
    pts = quasi_random(dims, 8, seed=3)
    lrs = sorted(p["optim.lr"] for p in pts)
    assert all(1e-5 <= v <= 1e-1 for v in lrs)
    # stratified in log space: each of the 4 decades holds 2 of the 8 points (random would clump)
    import math
    assert [sum(int(math.log10(v) + 5) == k for v in lrs) for k in range(4)] == [2, 2, 2, 2]
    # two points and three values: the two not already tried come first
    two = quasi_random(dims[1:], 2, seed=0, first={"augmentation": "none"})
    assert sorted(p["augmentation"] for p in two) == ["a", "b"]
    assert quasi_random(dims, 8, seed=3) == pts  # a seed repeats its points
    assert too_few_trials(5, 2) and not too_few_trials(6, 2)


def test_random_search_resumes_without_repeating(tmp_path):
    s = search(cfg(), "random", trials=4, sweep_dir=tmp_path / "sw")
    assert len(finished(s)) == 4 and s["best"]["value"] > 0.5
    for t in s["trials"]:
        assert (Path(t["run_dir"]) / "summary.json").exists()  # every trial is a run directory
    s = search(cfg(), "random", trials=6, sweep_dir=tmp_path / "sw")  # restarted with a larger target
    assert len(finished(s)) == 6
    params = [json.dumps(t["params"], sort_keys=True) for t in s["trials"]]
    assert len(set(params)) == len(params)


def test_grid_and_divergence_stop_at_once(tmp_path):
    c = cfg().model_copy(update={"search": {"optim.lr": "grid([0.01, 0.1])", "model.width": "grid([8, 16])"}})
    s = search(c, "grid", trials=100, sweep_dir=tmp_path / "grid")
    combos = {(t["params"]["optim.lr"], t["params"]["model.width"]) for t in s["trials"]}
    assert combos == {(0.01, 8), (0.01, 16), (0.1, 8), (0.1, 16)}
    d = cfg(**{"optim.name": "sgd"}).model_copy(update={"search": {"optim.lr": "loguniform(1e3, 1e5)"}})
    s = search(d, "random", trials=3, sweep_dir=tmp_path / "div", pruner="none")
    assert all(t["status"] == "diverged" and t["steps"] < 20 for t in s["trials"])
    from coach.report import render_sweep
    assert "every trial diverged" in render_sweep(tmp_path / "div").read_text()


class _Trial:
    """What TrialGuard sees of an Optuna trial: report() and should_prune()."""

    def __init__(self, prune_at=None):
        self.reports, self.prune_at = [], prune_at

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and len(self.reports) >= self.prune_at


def test_trial_guard_stops_above_three_times_the_initial_loss():
    from types import SimpleNamespace

    from coach.sweep.engine import TrialGuard
    for losses, stops_at in (([2.0, 5.9, 4.0, 5.99], None), ([2.0, 3.0, 6.01, 1.0], 3),
                             ([2.0, float("nan")], 2), ([2.0, float("inf")], 2)):
        t, g = SimpleNamespace(stop_reason=None), TrialGuard(_Trial(), "val_acc")
        for i, loss in enumerate(losses, 1):
            g.on_step_end(t, {"loss": loss})
            if t.stop_reason:
                break
        assert (i if t.stop_reason else None) == stops_at, losses
        if stops_at:
            assert t.stop_reason.startswith("diverged: the loss rose to") and "initial 2" in t.stop_reason
    trial, t = _Trial(prune_at=2), SimpleNamespace(stop_reason=None)
    g = TrialGuard(trial, "val_acc")
    g.on_eval_end(t, {"val_acc": 0.3})
    assert t.stop_reason is None
    g.on_eval_end(t, {"val_acc": 0.4})
    assert t.stop_reason == "pruned" and trial.reports == [(1, 0.3), (2, 0.4)]
    trial, t = _Trial(prune_at=1), SimpleNamespace(stop_reason=None)
    g = TrialGuard(trial, "val_acc", report=False)  # no pruner: nothing written to the storage
    g.on_eval_end(t, {"val_acc": 0.3})
    assert trial.reports == [] and t.stop_reason is None


def test_asha_prunes_and_none_does_not(tmp_path):
    c = cfg(**{"train.epochs": 6}).model_copy(update={"search": {"optim.lr": "loguniform(1e-6, 1e-1)"}})
    per_epoch = 1295 // 64
    s = search(c, "random", trials=9, sweep_dir=tmp_path / "asha", pruner="asha")
    pruned = [t for t in s["trials"] if t["state"] == "PRUNED"]
    assert s["pruner"] == "asha" and len(pruned) >= 2
    assert all(t["steps"] < 6 * per_epoch and t["status"] == "pruned" for t in pruned)
    assert s["best"]["state"] == "COMPLETE"
    s = search(c, "random", trials=9, sweep_dir=tmp_path / "none", pruner="none")
    assert [t["state"] for t in s["trials"]] == ["COMPLETE"] * 9
    assert all(t["steps"] == 6 * per_epoch for t in s["trials"])


def test_tpe_samples_with_tpe_and_prunes_with_hyperband_by_default(tmp_path):
    from coach.sweep.engine import make_sampler, open_storage
    s = search(cfg(), "tpe", trials=7, sweep_dir=tmp_path / "tpe")
    assert s["strategy"] == "tpe" and s["pruner"] == "hyperband" and len(finished(s)) == 7
    study = optuna.load_study(study_name="coach", storage=open_storage(None, tmp_path / "tpe"))
    assert study.user_attrs["pruner"] == "hyperband"
    dims = [parse_dim("optim.lr", "loguniform(1e-4, 1e-1)")]
    assert isinstance(make_sampler("tpe", dims, 0, 3), optuna.samplers.TPESampler)
    # after its 5 random start-up trials TPE proposes near the good region of a known objective
    late = {}
    for strategy in ("tpe", "random"):
        study = optuna.create_study(sampler=make_sampler(strategy, dims, 0, 3))
        study.optimize(lambda t: (math.log10(t.suggest_float("x", 1e-4, 1e-1, log=True)) + 2.5) ** 2, n_trials=30)
        dist = sorted(abs(math.log10(t.params["x"]) + 2.5) for t in study.trials[10:])
        late[strategy] = dist[len(dist) // 2]
    assert late["tpe"] < 0.5 * late["random"], late  # TPE's later proposals crowd the optimum


@needs_chromium
def test_command_center_renders(tmp_path):
    search(cfg(), "random", trials=5, sweep_dir=tmp_path / "sw")
    from coach.report import render_sweep
    page = render_sweep(tmp_path / "sw")
    text = page.read_text()
    assert "class='sortable'" in text and "optim.lr" in text and "too few" in text
    assert chromium_plots(page, tmp_path) >= 3  # loss curves, accuracy curves, metric vs hyperparameters


def test_coarse_to_fine_stages_train_longer(tmp_path):
    s = search(cfg(**{"train.epochs": 4}), "coarse-to-fine", trials=9, stages=3, sweep_dir=tmp_path / "c2f")
    assert [st["epochs"] for st in s["stages"]] == [2, 2, 4]
    assert stage_epochs(6, 3) == [2, 3, 6] and stage_epochs(2, 2) == [1, 2] and stage_epochs(16, 3) == [4, 8, 16]
    assert len(finished(s)) == 9
    lr1 = parse_dim("optim.lr", s["stages"][0]["space"]["optim.lr"])
    lr3 = parse_dim("optim.lr", s["stages"][2]["space"]["optim.lr"])
    assert lr3.high / lr3.low < lr1.high / lr1.low or "edge" in " ".join(s["stages"][1]["notes"])


def test_journal_with_two_worker_processes(tmp_path):
    s = search(cfg(), "random", trials=6, workers=2, sweep_dir=tmp_path / "two")
    numbers = [t["number"] for t in s["trials"]]
    params = [json.dumps(t["params"], sort_keys=True) for t in s["trials"]]
    # two workers can both start the last trial in the same instant: at most one extra
    assert 6 <= len(finished(s)) <= 7 and len(set(numbers)) == len(numbers) == len(set(params))
    assert len({t["run_dir"] for t in s["trials"]}) == len(numbers)


def test_cli_search_and_errors(tmp_path):
    import yaml
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(BASE))
    search = [sys.executable, "-m", "coach", "search", str(tmp_path / "c.yaml")]
    p, storage, space = side_by_side(
        search + ["--trials", "2", "--sweep-dir", str(tmp_path / "sw")],
        search + ["--storage", "postgresql://nobody@127.0.0.1:1/none", "--sweep-dir", str(tmp_path / "x")],
        search + ["--set", "search={optim.lr: 'loguniform(-1, 1)'}"], cwd=ROOT, env=ENV)
    assert p.returncode == 0 and "command center:" in p.stdout, p.stderr
    p = storage
    assert p.returncode == 2 and "--storage" in p.stderr and "Traceback" not in p.stderr
    p = space
    assert p.returncode == 2 and "low > 0" in p.stderr


# ------------------------------------------------------------------ PostgreSQL
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    if not PG_BIN or os.geteuid() != 0:
        pytest.skip("PostgreSQL server not installed (make test installs it) or not root")
    import tempfile
    bin_dir = PG_BIN[-1].parent
    root = Path(tempfile.mkdtemp(prefix="coach-pg-"))  # pytest's own tmp is root-only; postgres must get in
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    shutil.chown(root, "postgres")
    shutil.chown(sock, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_pg + [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    subprocess.run(as_pg + [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "coach"], check=True)
    yield f"postgresql://postgres@127.0.0.1:{port}/coach"
    subprocess.run(as_pg + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _worker(url, study, sweep):
    return subprocess.Popen([sys.executable, "-m", "coach", "search", "--worker", "--storage", url, "--study", study,
                             "--sweep-dir", str(sweep)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _study(url, name, c, trials):
    from coach.sweep.engine import Sweep
    from coach.sweep.space import parse_space
    from coach.train.job import prepare
    sweep = Sweep(prepare(c, load=False), Path("."), url, 1, "none", 3, None)
    return sweep.stage(name, parse_space(c.search, c), "random", trials, c.train.epochs)


def test_postgres_two_workers_share_a_study(postgres, tmp_path):
    _study(postgres, "shared", cfg(), 6)
    procs = [_worker(postgres, "shared", tmp_path / f"w{i}") for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read()
    trials = optuna.load_study(study_name="shared", storage=postgres).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 6 <= len(done) <= 7 and len({t.number for t in trials}) == len(trials)  # none lost, none duplicated
    hosts = {t.user_attrs["pid"] for t in done}
    assert len(hosts) == 2  # both workers did some


def test_postgres_killed_worker_trial_is_retried(postgres, tmp_path):
    c = cfg(**{"train.epochs": 60})
    _study(postgres, "killed", c, 2)
    victim = _worker(postgres, "killed", tmp_path / "victim")
    study = optuna.load_study(study_name="killed", storage=postgres)
    deadline = time.time() + 120
    while time.time() < deadline and not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        time.sleep(0.2)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))[0].number
    rescuer = _worker(postgres, "killed", tmp_path / "rescuer")
    assert rescuer.wait(timeout=300) == 0, rescuer.stdout.read()
    trials = study.get_trials()
    assert trials[killed].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == trials[killed].params
    assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2


def test_postgres_without_its_extra_names_the_extra(tmp_path, monkeypatch):
    from coach.sweep.engine import open_storage
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if `pip install coach` without [postgres]
    with pytest.raises(UserError, match=r"pip install 'coach\[postgres\]'"):
        open_storage("postgresql://u@127.0.0.1:1/x", tmp_path)
