"""The default Fashion-MNIST model: seconds per epoch and test accuracy after each epoch.

Uses the default config (VGG-style convnet, width 32, 2 stages, batch norm, Adam 1e-3)
unless overridden. The test split is read here only because this is a benchmark.

    python bench/fashion.py [--epochs 5] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.train import Callback, evaluate_model  # noqa: E402


class TestEachEpoch(Callback):
    def __init__(self, test):
        self.test, self.rows, self.last = test, [], 0.0

    def on_eval_end(self, t, logs):
        test = evaluate_model(t.raw_model, self.test, t.device)
        self.rows.append((logs["epoch"], logs["time"] - self.last, logs["val_acc"], test["acc"]))
        self.last = logs["time"]
        print(f"epoch {logs['epoch']:.0f}: {self.rows[-1][1]:.1f} s, val acc {logs['val_acc']:.4f}, "
              f"test acc {test['acc']:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = ap.parse_args()
    cfg = coach.make_config(overrides=[f"train.epochs={args.epochs}", "train.progress=false", *args.overrides])
    data = coach.load_data(cfg.data, cfg.seed)
    probe = TestEachEpoch(data.test)
    with tempfile.TemporaryDirectory() as d:
        coach.fit(cfg, run_dir=Path(d) / "run", data=data, callbacks=[probe])
    print(f"{cfg.model.name} width {cfg.model.width} depth {cfg.model.depth}, {torch.get_num_threads()} threads: "
          f"median epoch {sorted(r[1] for r in probe.rows)[len(probe.rows) // 2]:.1f} s, "
          f"final test acc {probe.rows[-1][3]:.4f}")


if __name__ == "__main__":
    main()
