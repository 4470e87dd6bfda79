"""Successive halving in seconds with continuation, one dimension per rung: each rung's arms
continue from the incumbent's weights, the incumbent wins ties within the margin, a prior
can tip a tie, an interrupted search resumes without retraining."""
import json
import shutil

import pytest
import torch

from coach.config import make_config
from coach.data import load_data
from coach.search.halving import halving, losers_seconds, train_for
from coach.train import Run


@pytest.fixture(scope="module")
def digits():
    cfg = make_config({"data": {"name": "digits"}, "model": {"name": "mlp", "width": 32, "depth": 1},
                       "optim": {"name": "adamw", "lr": 3e-3}, "schedule": {"name": "onecycle"},
                       "train": {"batch_size": 64, "progress": False, "monitor_every": 0}})
    return cfg, load_data(cfg.data)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_a_continued_trial_starts_from_its_parents_weights(digits, tmp_path):
    cfg, data = digits
    parent = train_for(cfg, tmp_path / "rung-0", data, seconds=2.5, epoch_seconds=0.05)
    assert parent.summary["steps"] > 0
    before = params(Run.open(tmp_path / "rung-0").load_model("final"))
    # at a vanishing LR the child's weights stay where the parent left them...
    frozen = cfg.replace(**{"optim.lr": 1e-12})
    child = train_for(frozen, tmp_path / "rung-1", data, seconds=0.5, epoch_seconds=0.05, parent=tmp_path / "rung-0")
    after = params(Run.open(tmp_path / "rung-1").load_model("final"))
    assert child.summary["steps"] > 0 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, after))
    # ...and a continuation is not called diverged for rising above its (trained, tiny) first loss
    assert child.summary["status"] == "completed" and not (child.summary["stop_reason"] or "").startswith("diverged")
    # without a parent they are a fresh initialization, far from it
    fresh = train_for(frozen, tmp_path / "fresh", data, seconds=0.5, epoch_seconds=0.05)
    other = params(Run.open(tmp_path / "fresh").load_model("final"))
    assert fresh.summary["steps"] > 0 and not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(before, other))
    # the schedule was fitted to the seconds: the LR ends near zero (one-cycle's end), not mid-way
    last = [json.loads(x) for x in (tmp_path / "rung-0" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["lr"] < 0.05 * cfg.optim.lr


RUNGS = [[{}, {"optim.lr": 1e-2}, {"optim.lr": 3e-4}], [{}, {"optim.weight_decay": 0.05}, {"seed": 7}]]


def planted(values):
    """A value function that reads the planted value of the option that made the run."""
    def value(run, cfg):
        lr, wd, seed = cfg.optim.lr, cfg.optim.weight_decay, cfg.seed
        return values[(lr, wd, seed)]
    return value


def test_each_rung_continues_the_incumbent_and_it_wins_ties(digits, tmp_path):
    cfg, data = digits
    wd0 = cfg.optim.weight_decay
    # rung 0: lr 1e-2 beats the plain 3e-3 by 0.004; rung 1 (on lr 1e-2): weight decay beats it by 0.004
    values = {(3e-3, wd0, 0): 0.900, (1e-2, wd0, 0): 0.904, (3e-4, wd0, 0): 0.800,
              (1e-2, 0.05, 0): 0.914, (1e-2, wd0, 7): 0.905}
    seen = []
    tight = halving(cfg, RUNGS, data, tmp_path / "tight", seconds=[0.4, 0.4], epoch_seconds=0.05, margin=0.0,
                    value=planted(values), on_trial=seen.append)
    # rung 1's arm 0 is lr 1e-2 continued: value 0.904 as planted; weight decay 0.914 wins
    assert tight["best"]["overrides"] == {"optim.lr": 1e-2, "optim.weight_decay": 0.05}
    assert tight["best"]["run_dir"].endswith("rung-1/arm-1") and len(seen) == 6
    # every rung-1 arm started from rung 0's winner: at a vanishing LR nothing would move (checked above);
    # here: the first loss of each rung-1 arm is far below a fresh model's (log 10 = 2.3)
    for arm in range(3):
        first = json.loads((tmp_path / "tight" / "trials" / "rung-1" / f"arm-{arm}" / "metrics.jsonl")
                           .read_text().splitlines()[0])
        assert first.get("loss", first.get("train_loss")) < 1.0
    # with a margin above the 0.004 leads, the plain recipe keeps its place at every rung
    noisy = halving(cfg, RUNGS, data, tmp_path / "noisy", seconds=[0.4, 0.4], epoch_seconds=0.05, margin=0.01,
                    value=planted({**values, (3e-3, wd0, 7): 0.901, (3e-3, 0.05, 0): 0.905}))
    assert noisy["best"]["overrides"] == {} and noisy["best"]["arm"] == 0
    rows = json.loads((tmp_path / "noisy" / "sweep.json").read_text())["trials"]
    assert [r["status"] for r in rows] == ["promoted", "stopped", "stopped"] * 2
    # a prior (evidence other than the value) can tip a tie: weight decay is kept within 2x the margin
    tipped = halving(cfg, RUNGS, data, tmp_path / "tipped", seconds=[0.4, 0.4], epoch_seconds=0.05, margin=0.01,
                     value=planted({**values, (3e-3, wd0, 7): 0.901, (3e-3, 0.05, 0): 0.895}),
                     prior=lambda k, arm, rung: 0.02 if k == 1 and arm == 1 else 0.0)
    assert tipped["best"]["overrides"] == {"optim.weight_decay": 0.05}
    # what a rung's curves show can end the search there: the incumbent goes on
    asked = []
    stopped = halving(cfg, RUNGS, data, tmp_path / "stopped", seconds=[0.4, 0.4], epoch_seconds=0.05,
                      value=planted(values), keep_going=lambda k, rung: asked.append((k, sorted(rung))) or False)
    assert asked == [(0, [0, 1, 2])] and stopped["stopped_after"] == 0
    assert stopped["best"]["overrides"] == {"optim.lr": 1e-2} and len(stopped["trials"]) == 3


def test_an_interrupted_search_resumes_without_retraining(digits, tmp_path):
    cfg, data = digits
    rungs = [[{}, {"optim.lr": 1e-2}, {"optim.lr": 1e-3}]]
    first = halving(cfg, rungs, data, tmp_path / "s", seconds=[0.4], epoch_seconds=0.05)
    state = json.loads((tmp_path / "s" / "halving.json").read_text())
    del state["results"]["0/2"]  # as if killed before the last trial finished
    (tmp_path / "s" / "halving.json").write_text(json.dumps(state))
    shutil.rmtree(tmp_path / "s" / "trials" / "rung-0" / "arm-2")
    stamp = (tmp_path / "s" / "trials" / "rung-0" / "arm-0" / "summary.json").stat().st_mtime_ns
    again = halving(cfg, [[{}, {"optim.lr": 0.5}, {"optim.lr": 0.5}]], data, tmp_path / "s", seconds=[9.0],
                    epoch_seconds=0.05)
    assert (tmp_path / "s" / "trials" / "rung-0" / "arm-0" / "summary.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "s" / "trials" / "rung-0" / "arm-2" / "summary.json").exists()
    assert [t["params"] for t in again["trials"]] == [t["params"] for t in first["trials"]]  # the plan it started with


def test_rungs_must_start_with_the_incumbent(digits, tmp_path):
    cfg, data = digits
    with pytest.raises(ValueError, match="option 0"):
        halving(cfg, [[{"optim.lr": 1e-2}, {}]], data, tmp_path, seconds=[1.0], epoch_seconds=0.05)
    with pytest.raises(ValueError, match="one length per rung"):
        halving(cfg, RUNGS, data, tmp_path, seconds=[1.0], epoch_seconds=0.05)
    assert losers_seconds([10.0, 20.0]) == 60.0  # 2 losing arms per rung
