import json

import numpy as np
import torch

import coach
from coach.train import Callback

CFG = {"data": {"name": "digits"}, "model": {"name": "mlp", "width": 16}, "optim": {"name": "sgd", "lr": 0.1},
       "train": {"epochs": 1, "batch_size": 64, "progress": False, "monitor_every": 4}}


class Spy(Callback):
    """Records the weights right before and after step 4's update."""

    def on_before_optimizer_step(self, t):
        if t.step == 3:
            self.before = t.raw_model.head.weight.detach().clone()
            self.grad = t.raw_model.head.weight.grad.detach().clone()

    def on_step_end(self, t, logs):
        if t.step == 4:
            self.after = t.raw_model.head.weight.detach().clone()


def test_update_ratio_and_records(tmp_path):
    cfg = coach.make_config(CFG)
    spy = Spy()
    run = coach.fit(cfg, run_dir=tmp_path / "r", callbacks=[spy])
    records = [json.loads(ln) for ln in (tmp_path / "r" / "monitors.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[0]["acts"] and not records[0]["layers"]  # at initialization
    assert [r["step"] for r in records[1:]] == list(range(4, run.summary["steps"] + 1, 4))
    expected = ((spy.after - spy.before).norm() / spy.before.norm()).item()
    assert abs(records[1]["layers"]["head.weight"]["update_ratio"] - expected) < 1e-6
    acts = records[1]["acts"]
    assert set(acts) == {"features.3", "features.6"} and 0 <= acts["features.3"]["dead"] <= 1
    assert sum(acts["features.3"]["hist"]) == 128 * 16
    # the gradient histogram: log10 |g| in fixed half-decade bins, against numpy on the same gradient
    layer = records[1]["layers"]["head.weight"]
    g = spy.grad.abs().flatten().numpy()
    logs = np.clip(np.log10(g[g > 0]), -12, 2 - 1e-6)
    assert layer["grad_hist"] == np.histogram(logs, bins=28, range=(-12, 2))[0].tolist()
    assert layer["grad_range"] == [-12, 2] and abs(layer["grad_norm"] - spy.grad.norm().item()) < 1e-6


def test_monitoring_does_not_change_training(tmp_path):
    a = coach.fit(coach.make_config(CFG), run_dir=tmp_path / "a").model
    b = coach.fit(coach.make_config(CFG).replace(**{"train.monitor_every": 0}), run_dir=tmp_path / "b").model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
