"""Cost of the live monitors: mean step time with default monitoring (every 50 steps) vs off.

A mean, not a median: the monitors run on one step in 50, and a median would hide
exactly that. Runs are interleaved (off, on, off, on...). Target: ratio <= 1.10.

    python bench/monitors.py [--model convnet|mlp] [--steps 200] [--rounds 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.train.callbacks import StepClock  # noqa: E402


def mean_step(cfg, data, steps: int, every: int) -> float:
    cfg = cfg.replace(**{"train.max_steps": steps, "train.eval_every": 10**9, "train.checkpoint_every": 10**9,
                         "train.monitor_every": every})
    clock = StepClock()
    with tempfile.TemporaryDirectory() as d:
        coach.fit(cfg, run_dir=Path(d) / "run", data=data, callbacks=[clock])
    t = clock.times[10:]
    return (t[-1] - t[0]) / (len(t) - 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet", choices=["convnet", "mlp"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    cfg = coach.make_config(overrides=[f"model.name={args.model}"] + (["model.width=256"] if args.model == "mlp" else []))
    data = coach.load_data(cfg.data, cfg.seed)
    off = on = 0.0
    for _ in range(args.rounds):
        off += mean_step(cfg, data, args.steps, 0)
        on += mean_step(cfg, data, args.steps, 50)
    print(f"model {args.model}: mean step {off / args.rounds * 1e3:.2f} ms without monitors, "
          f"{on / args.rounds * 1e3:.2f} ms with monitors every 50 steps")
    print(f"ratio monitors on/off: {on / off:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
