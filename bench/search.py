"""Search strategies at equal trial budgets: grid vs random vs coarse-to-fine (with ASHA
early stopping) vs TPE + Hyperband, several seeds; and 2 workers vs 1.

Compute is counted in training steps actually taken (pruned and diverged trials stop early).
For each strategy: the best validation accuracy, the compute spent, and the compute spent
until it first matched grid search's best.

    python bench/search.py [--seeds 3] [--trials 16] [--epochs 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.sweep import search  # noqa: E402

SPACE = {"optim.lr": "loguniform(1e-5, 1.0)", "optim.weight_decay": "loguniform(1e-7, 1e-1)"}


def steps_to_reach(summary: dict, target: float) -> int | None:
    used = 0
    for t in sorted(summary["trials"], key=lambda t: (t["stage"], t["number"])):
        used += t["steps"] or 0
        if t["value"] is not None and t["state"] == "COMPLETE" and t["value"] >= target - 1e-9:
            return used
    return None


def best_within(summary: dict, steps: float) -> float | None:
    """The best value a search had found by the time it had spent `steps` (equal compute)."""
    used, best = 0, None
    for t in sorted(summary["trials"], key=lambda t: (t["stage"], t["number"])):
        used += t["steps"] or 0
        if used > steps:
            break
        if t["value"] is not None and t["state"] == "COMPLETE":
            best = t["value"] if best is None else max(best, t["value"])
    return best


def bench(name: str, over: list[str], args: argparse.Namespace, root: Path) -> None:
    base = coach.make_config(overrides=[f"data.name={name}", f"train.epochs={args.epochs}", "model.width=64",
                                        "train.monitor_every=0", "optim.name=adamw", *over])
    base = base.model_copy(update={"search": SPACE})
    grid = search(base, "grid", trials=args.trials, sweep_dir=root / f"{name}-grid", pruner="none",
                  grid_per_dim=round(args.trials ** 0.5))
    target = grid["best"]["value"]
    print(f"\n{name}: grid {len(grid['trials'])} trials, best {target:.4f}, compute {grid['compute_steps']} steps")
    runs = {}
    for strategy, pruner in (("random", "asha"), ("coarse-to-fine", "asha"), ("tpe", "hyperband")):
        runs[strategy] = [search(base.replace(seed=seed), strategy, trials=args.trials, pruner=pruner, stages=3,
                                 sweep_dir=root / f"{name}-{strategy}-{seed}") for seed in range(args.seeds)]
    c2f_spent = [s["compute_steps"] for s in runs["coarse-to-fine"]]
    for strategy, sums in runs.items():
        bests = [s["best"]["value"] for s in sums]
        spent = [s["compute_steps"] for s in sums]
        reach = [steps_to_reach(s, target) for s in sums]
        equal = [best_within(s, c) or 0.0 for s, c in zip(sums, c2f_spent)]  # same seed, c2f's compute
        hit = [r for r in reach if r is not None]
        print(f"  {strategy:<15} best {statistics.mean(bests):.4f} (min {min(bests):.4f}), compute "
              f"{statistics.mean(spent):.0f} steps ({statistics.mean(spent) / grid['compute_steps']:.2f} of grid); "
              f"at coarse-to-fine's compute {statistics.mean(equal):.4f}; reached grid's best in "
              f"{len(hit)}/{len(reach)} seeds" + (f", after {statistics.mean(hit) / grid['compute_steps']:.2f} of "
                                                 "grid's compute" if hit else ""))


def throughput(args: argparse.Namespace, root: Path) -> None:
    # trials/hour is a steady-state rate: 48 trials of a few seconds each, so the second worker's
    # start-up (importing torch, loading the data: ~2 s) and the last trial's tail weigh as they
    # would in a search of some minutes, not dominate it
    base = coach.make_config(overrides=["data.name=mnist1d", "train.epochs=40", "model.name=mlp", "model.width=64",
                                        "train.monitor_every=0"]).model_copy(update={"search": SPACE})
    rates, n = {}, 48
    for workers in (1, 2):
        t = time.time()
        search(base, "random", trials=n, workers=workers, pruner="none", sweep_dir=root / f"w{workers}")
        rates[workers] = n / (time.time() - t) * 3600
    print(f"\nthroughput: 1 worker {rates[1]:.0f} trials/h, 2 workers {rates[2]:.0f} trials/h "
          f"-> {rates[2] / rates[1]:.2f}x (target >= 1.8x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--only-throughput", action="store_true")
    ap.add_argument("--only", choices=["mnist1d", "fashion-mnist"], help="one dataset (and the throughput)")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        # MNIST-1D with the 1-D convnet coach uses for signals (an MLP learns it so slowly that
        # after a few epochs the ranking is noise); Fashion-MNIST with an MLP, to stay quick
        for name, over in (("mnist1d", ["model.name=convnet", "model.width=16"]),
                           ("fashion-mnist", ["model.name=mlp", "data.limit=5000"])):
            if not args.only_throughput and args.only in (None, name):
                bench(name, over, args, Path(d))
        if not args.no_throughput:
            throughput(args, Path(d))


if __name__ == "__main__":
    main()
