"""The autopilot with no settings beyond the data and a budget: test accuracy and time used.

    python bench/autopilot.py [--only fashion-mnist|mnist1d|digits] [--scale 1.0]

Budgets: Fashion-MNIST 20 minutes, MNIST-1D 3 minutes, digits 2 minutes (times --scale).
Anchors: Fashion-MNIST benchmark table (2 conv + pooling 0.916, Google AutoML 24 h 0.939);
MNIST-1D paper (CNN 0.94, human 0.96); scikit-learn's SVC digits example (0.97).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coach.autopilot import autopilot  # noqa: E402

TARGETS = {"fashion-mnist": (1200, "target >= 0.940"), "mnist1d": (180, "target >= 0.97"),
           "digits": (120, "scikit-learn SVC example: 0.97")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(TARGETS))
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    for name, (budget, anchor) in TARGETS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            r = autopilot(name, budget=budget * args.scale, out=Path(d) / name)
            print(f"{name}: test accuracy {r.get('test_acc', float('nan')):.4f} in {r['time']:.0f}s of a "
                  f"{budget * args.scale:.0f}s budget ({anchor})", flush=True)


if __name__ == "__main__":
    main()
