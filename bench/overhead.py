"""Trainer overhead: coach's fit loop against a minimal hand-written PyTorch loop.

Same model (built by coach), data (device-resident tensors), optimizer, batch size and
seed. Step times are taken between consecutive steps; runs are interleaved
(hand, coach-bare, coach-default, hand, ...) so machine noise hits all alike. Prints
the median step-time ratios: target <= 1.02 with callbacks off, <= 1.10 with the
default callbacks (metrics log, keep-best, progress bar) on.

    python bench/overhead.py [--model convnet|mlp] [--steps 150] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.train.callbacks import StepClock  # noqa: E402


def diffs(times: list[float], skip: int = 10) -> list[float]:
    return [b - a for a, b in zip(times[skip:], times[skip + 1:])]


def hand_loop(cfg, data, steps: int, watch_dir: Path | None = None) -> list[float]:
    """The plain PyTorch loop; watch_dir: the same loop under coach.watch (bench/watch.py)."""
    torch.manual_seed(cfg.seed)
    model = coach.build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularize, data.preprocess)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    x_all, y_all = data.train.x, data.train.y
    bs, times = cfg.train.batch_size, []
    perm = torch.randperm(len(y_all))
    model.train()
    watching = coach.watch(model, opt, out=watch_dir, num_classes=data.num_classes) if watch_dir else nullcontext()
    with watching as w:  # its diagnosis and report, on leaving, come after the last timed step
        for step in range(steps):
            i = step % (len(y_all) // bs)
            idx = perm[i * bs:(i + 1) * bs]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
            times.append(time.perf_counter())
    return diffs(times)


def coach_loop(cfg, data, steps: int, default: bool) -> list[float]:
    clock = StepClock()
    cfg = cfg.replace(**{"train.max_steps": steps, "train.eval_every": 10**9, "train.checkpoint_every": 10**9})
    with tempfile.TemporaryDirectory() as d:
        coach.fit(cfg, run_dir=Path(d) / "run", data=data, callbacks=[clock], default_callbacks=default)
    return diffs(clock.times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet", choices=["convnet", "mlp"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    overrides = [f"model.name={args.model}", "train.progress=true", "optim.name=adam"]
    if args.model == "mlp":
        overrides += ["model.width=256", "model.depth=2"]
    cfg = coach.make_config(overrides=overrides)
    data = coach.load_data(cfg.data, cfg.seed)
    hand, bare, full = [], [], []
    for _ in range(args.rounds):
        hand += hand_loop(cfg, data, args.steps)
        bare += coach_loop(cfg, data, args.steps, default=False)
        full += coach_loop(cfg, data, args.steps, default=True)
    h, b, f = (statistics.median(v) for v in (hand, bare, full))
    print(f"model {args.model} on fashion-mnist, batch {cfg.train.batch_size}, {torch.get_num_threads()} threads")
    print(f"median step: hand {h * 1e3:.2f} ms, coach (callbacks off) {b * 1e3:.2f} ms, "
          f"coach (default callbacks) {f * 1e3:.2f} ms")
    print(f"ratio callbacks off: {b / h:.3f} (target <= 1.02)")
    print(f"ratio default callbacks: {f / h:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
