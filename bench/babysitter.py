"""Cost of coach's Lightning callback (coach.integrations.lightning.Babysitter) against the same
Lightning training without it, and what its pre-flight checks cost.

coach's default convnet (built by coach, wrapped in a LightningModule) on Fashion-MNIST, Adam,
batch 128, `steps` optimizer steps on the CPU. The Babysitter at its default sampling interval
(every 50 steps: update ratios, gradient histograms, activations on a probe batch) plus the
per-step loss log, pre-flight off (it runs once, before training: timed apart). A mean step time
(time between consecutive batch ends, the first 10 skipped), runs interleaved, the median of the
rounds' ratios printed. Target (issue 12, as for coach.watch): ratio <= 1.05.

    python bench/babysitter.py [--steps 200] [--rounds 5]

(Not bench/lightning.py: a script beside it named lightning would shadow the package.)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402

try:
    import lightning.pytorch as pl
except ImportError:
    sys.exit("bench/babysitter.py needs lightning: pip install 'coach[lightning]'")
from coach.integrations.lightning import Babysitter  # noqa: E402


class Module(pl.LightningModule):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class StepClock(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def build(cfg, data) -> Module:
    torch.manual_seed(0)
    return Module(coach.build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess,
                                    batch=data.train.x[:256]))


def train(cfg, data, steps: int, sitter: Babysitter | None) -> float:
    """Mean step time of `steps` Lightning steps, with the Babysitter when given."""
    clock = StepClock()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.train.x, data.train.y),
                                         batch_size=cfg.train.batch_size, shuffle=True)
    trainer = pl.Trainer(max_steps=steps, callbacks=[clock] + ([sitter] if sitter else []), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1)
    trainer.fit(build(cfg, data), loader)
    gaps = [b - a for a, b in zip(clock.times[10:], clock.times[11:])]
    return statistics.mean(gaps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cfg = coach.make_config()
    data = coach.load_data(cfg.data, cfg.seed)
    plain, sat = [], []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            plain.append(train(cfg, data, args.steps, None))
            sat.append(train(cfg, data, args.steps, Babysitter(out=Path(d) / f"r{r}", preflight=False,
                                                                 say=lambda line: None)))
        t0 = time.perf_counter()
        train(cfg, data, 12, Babysitter(out=Path(d) / "preflight", say=lambda line: None))
        with_preflight = time.perf_counter() - t0
        t0 = time.perf_counter()
        train(cfg, data, 12, None)
        without = time.perf_counter() - t0
    ratios = sorted(b / a for a, b in zip(plain, sat))
    print(f"coach's default convnet on fashion-mnist in Lightning, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds of {args.steps} steps")
    print(f"mean step: plain Lightning {statistics.mean(plain) * 1e3:.2f} ms, with the Babysitter (every 50 steps) "
          f"{statistics.mean(sat) * 1e3:.2f} ms; per-round ratios {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio babysat/plain (median of rounds): {ratios[len(ratios) // 2]:.3f} (target <= 1.05)")
    print(f"pre-flight checks (coach check on 1000 training examples, default step counts): "
          f"{with_preflight - without:.1f} s once, before the first step")


if __name__ == "__main__":
    main()
