"""Your own model through coach, against the loop a person writes for it, at equal wall time.

The model is the user's: a function of its width that builds a 2-hidden-layer MLP (a user's
default width 128). On each dataset, passed in memory (arrays), one after the other:
  raw loop   what a person writes: their MLP at width 128 on the raw inputs, Adam 1e-3, batch 64,
             shuffled epochs until the time is up, the last weights
  coach.fit  the same MLP through coach.fit: coach's standardization in front, AdamW 3e-3 with a
             one-cycle schedule fitted to the time (train.time_budget + fit_to_budget)
  autopilot  coach.autopilot(data, model=the function, budget=T): the cost stage sizes the
             width, the checks, the search, the final training, the choice on validation
Test accuracy of each on the same test split (coach's split of the arrays). Wall time of the
autopilot as measured around the call (it runs in this process).

    python bench/own.py [--only digits mnist1d] [--scale 1.0]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.data.memory import as_data  # noqa: E402

ROWS = {"digits": 30, "mnist1d": 60}  # seconds


def mlp(width: int = 128, input_shape: tuple = (64,), num_classes: int = 10) -> nn.Module:
    d = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def arrays(name: str) -> tuple:
    d = coach.load_data(coach.make_config({"data": {"name": name}}).data)
    x = torch.cat([d.train.x, d.val.x]).numpy()
    y = torch.cat([d.train.y, d.val.y]).numpy()
    return x, y, d.test.x.numpy(), d.test.y.numpy()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def raw_loop(data, seconds: float) -> float:
    torch.manual_seed(0)
    net = mlp(128, data.input_shape, data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.train.x, data.train.y
    end = time.time() + seconds
    while time.time() < end:
        net.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.time() >= end:
                break
    return accuracy(net, data.test.x, data.test.y)


def with_fit(held, data, seconds: float) -> float:
    cfg = coach.make_config({"optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4},
                             "schedule": {"name": "onecycle"},
                             "train": {"epochs": 1000, "progress": False, "monitor_every": 0, "fit_to_budget": True,
                                       "time_budget": seconds}})
    run = coach.fit(cfg, held, model=lambda width, input_shape, num_classes: mlp(128, input_shape, num_classes))
    model = run.load_model("final")
    return accuracy(model, data.test.x, data.test.y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=sorted(ROWS))
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    print(f"{'data':<9} {'budget':>6} {'raw loop':>8} {'coach.fit':>9} {'autopilot':>9} {'wall':>6}  autopilot's width")
    for name in args.only or ROWS:
        seconds = ROWS[name] * args.scale
        held = arrays(name)
        data, _ = as_data(held, coach.make_config({"data": {"name": "arrays"}}))
        raw = raw_loop(data, seconds)
        fitted = with_fit(held, data, seconds)
        t0 = time.time()
        session = coach.autopilot(held, model=mlp, budget=seconds, quiet=True)
        wall = time.time() - t0
        width = coach.Run.open(session["model_dir"]).config.model.width
        print(f"{name:<9} {seconds:>5.0f}s {raw:>8.4f} {fitted:>9.4f} {session['test_acc']:>9.4f} {wall:>5.0f}s  "
              f"{width}", flush=True)


if __name__ == "__main__":
    main()
