"""Cost of coach.watch inside a hand-written PyTorch loop, against the same loop unwatched.

Default convnet on Fashion-MNIST, Adam, batch 128; watch at its default sampling interval
(every 50 steps: update ratios, gradient histograms, activations on a probe batch) plus the
per-step loss log. A mean step time, not a median: the sampled steps are exactly the cost.
Runs are interleaved (plain, watched, plain, ...); the ratio printed is the median of the
rounds' ratios (one slow round on this noisy machine moves a pooled mean by 5-10%).
Target (issue 12): ratio <= 1.05.

    python bench/watch.py [--model convnet|mlp] [--steps 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import coach  # noqa: E402
from overhead import hand_loop  # noqa: E402  (the same plain loop as the trainer-overhead bench)


def loop(cfg, data, steps: int, out: Path | None) -> float:
    """Mean step time of bench/overhead.py's hand-written loop, watched when out is given."""
    return statistics.mean(hand_loop(cfg, data, steps, watch_dir=out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet", choices=["convnet", "mlp"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    overrides = [f"model.name={args.model}"] + (["model.width=256", "model.depth=2"] if args.model == "mlp" else [])
    cfg = coach.make_config(overrides=overrides)
    data = coach.load_data(cfg.data, cfg.seed)
    plain, watched = [], []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            plain.append(loop(cfg, data, args.steps, None))
            watched.append(loop(cfg, data, args.steps, Path(d) / f"w{r}"))
    p, w = sum(plain) / len(plain), sum(watched) / len(watched)
    ratios = sorted(b / a for a, b in zip(plain, watched))
    print(f"model {args.model} on fashion-mnist, batch {cfg.train.batch_size}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds of {args.steps} steps")
    print(f"mean step: plain loop {p * 1e3:.2f} ms, watched (every 50 steps) {w * 1e3:.2f} ms; "
          f"per-round ratios {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio watched/plain (median of rounds): {ratios[len(ratios) // 2]:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
