"""The autopilot against the plain recipe, side by side, at equal wall time.

    python bench/autopilot.py [--only NAME ...] [--scale 1.0] [--repeat 1]

Each row runs, one after the other on this machine:
  autopilot  `coach autopilot --data D --budget B` as a fresh process (its wall time is
             measured from outside: start-up, data loading, evaluation and report included)
  plain      coach's default config (convnet width 32, BN, Kaiming) with AdamW 3e-3 and a
             one-cycle schedule sized to the same wall time (`train.time_budget` with
             `fit_to_budget`), no search, no augmentation, also a fresh process
and prints test accuracy and wall time of both. Budgets scale with --scale.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # name: (data, data options, budget seconds, target)
    "fashion-3m": ("fashion-mnist", {}, 180, ">= plain"),
    "fashion-10m": ("fashion-mnist", {}, 600, ">= plain"),
    "fashion-15m": ("fashion-mnist", {}, 900, ">= plain (what make demo runs)"),
    "fashion-20m": ("fashion-mnist", {}, 1200, ">= plain and >= 0.935 (stretch 0.940)"),
    "fashion-8k-3m": ("fashion-mnist", {"limit": 8000}, 180, ">= plain + 0.005"),
    "mnist1d-3m": ("mnist1d", {}, 180, ">= 0.99"),
    "digits-1m": ("digits", {}, 60, ">= plain"),
}
# the plain process keeps this for its last validation and its one test evaluation, so it too ends
# within the budget (measured: 4-8 s on Fashion-MNIST)
END_SECONDS = 3.0
END_SHARE = 0.03


def plain(data: str, options: dict, budget: float, out: str) -> None:
    """The plain recipe, in this (fresh) process: trained for what is left of `budget` since
    the process started, then evaluated on the test split once."""
    from coach.autopilot.session import process_started

    start = process_started()
    from coach.config import make_config
    from coach.data import load_data
    from coach.evaluate import predict_proba, scores
    from coach.train import fit

    cfg = make_config({"data": {"name": data, **options}, "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4},
                       "schedule": {"name": "onecycle"},
                       "train": {"epochs": 1000, "progress": False, "monitor_every": 0, "fit_to_budget": True,
                                 "time_budget": 1.0}})
    d = load_data(cfg.data)
    left = budget * (1 - END_SHARE) - (time.time() - start) - END_SECONDS
    run = fit(cfg.replace(**{"train.time_budget": max(left, 1.0)}), run_dir=out, data=d)
    acc = scores(predict_proba(run.load_model("final"), d.test.x), d.test.y)["acc"]
    print(json.dumps({"test_acc": acc, "epochs": run.summary["epochs"]}), flush=True)


def timed(cmd: list[str], writes: Path | None = None) -> tuple[float, str]:
    """Wall time and stdout of cmd; exit 1 is a verdict (a session that stopped on hopeless data)
    only when the file it writes is there, else a crash: its stderr is shown."""
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode not in (0, 1) or (writes is not None and not writes.exists()):
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return time.time() - t0, p.stdout


def searched(session: Path) -> list[str]:
    """The dimensions the search actually tried (the plan's stop after the trunk when it does not
    overfit, or when the time runs out)."""
    sweep = session / "sweep" / "sweep.json"
    return list(json.loads(sweep.read_text()).get("space", {})) if sweep.exists() else []


def row(name: str, scale: float, keep: Path | None) -> dict:
    data, options, budget, target = ROWS[name]
    budget *= scale
    with tempfile.TemporaryDirectory() as tmp:
        base = keep or Path(tmp)
        sets = [f"data.{k}={v}" for k, v in options.items()]
        ap_wall, _ = timed([sys.executable, "-m", "coach", "autopilot", "--data", data, "--budget", f"{budget:.0f}s",
                            "--out", str(base / f"{name}-autopilot"), "--quiet"] + (["--set", *sets] if sets else []),
                           writes=base / f"{name}-autopilot" / "result.json")
        result = json.loads((base / f"{name}-autopilot" / "result.json").read_text())
        state = json.loads((base / f"{name}-autopilot" / "state.json").read_text())
        pl_wall, out = timed([sys.executable, __file__, "--plain", data, json.dumps(options), str(budget),
                              str(base / f"{name}-plain")])
        pl = json.loads(out.strip().splitlines()[-1])
    st = state["stages"]
    return {"row": name, "budget": budget, "target": target, "autopilot": result.get("test_acc"),
            "autopilot_wall": ap_wall, "plain": pl["test_acc"], "plain_wall": pl_wall, "plain_epochs": pl["epochs"],
            "width": st.get("cost", {}).get("width"), "threads": st.get("cost", {}).get("threads"),
            "search": searched(base / f"{name}-autopilot"),
            "winner": (st.get("search", {}).get("winner") or {}).get("params"),
            "final_epochs": st.get("final", {}).get("summary", {}).get("epochs"),
            "pick": st.get("choose", {}).get("pick")}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--plain":
        plain(sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=sorted(ROWS))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, help="keep the session and run directories here")
    args = ap.parse_args()
    print(f"{'row':<15} {'budget':>6} {'autopilot':>9} {'wall':>6} {'plain':>7} {'wall':>6} {'diff':>7}  target; plan")
    for name in args.only or ROWS:
        r = row(name, args.scale, args.keep)
        diff = (r["autopilot"] or 0) - r["plain"]
        print(f"{name:<15} {r['budget']:>5.0f}s {r['autopilot'] or float('nan'):>9.4f} {r['autopilot_wall']:>5.0f}s "
              f"{r['plain']:>7.4f} {r['plain_wall']:>5.0f}s {diff:>+7.4f}  {r['target']}; width {r['width']}, "
              f"{r['threads']} threads, searched {r['search']}, winner {r['winner']}, final {r['final_epochs'] or 0:.1f} "
              f"epochs, {r['pick']}; plain {r['plain_epochs']:.1f} epochs", flush=True)
        print("  " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
