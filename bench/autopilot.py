"""The autopilot against the strongest simple baselines, side by side, at equal wall time.

    python bench/autopilot.py [--only ROW ...] [--seeds 0 1] [--ablate] [--scale 1.0] [--keep DIR]

Each row runs, one after the other on this machine, every process fresh (its wall time is
measured from outside: start-up, data loading, evaluation and report included):
  autopilot  `coach autopilot --data D --budget B --seed S`
  baselines  coach's default model for the data (convnet width 32 / 1-D convnet / MLP width
             256) with AdamW 3e-3, weight decay 1e-4 and a one-cycle schedule sized to the same
             wall time (`train.time_budget` with `fit_to_budget`), on the same fast trainer
             (`train.precision=auto`, `train.channels_last=auto`: the autopilot's margin must
             come from its decisions, not from a faster loop), evaluated once on the test split:
               std     + the standard augmentation (2-px random crops on 28x28 images, shifts
                         for signals): the strongest simple baseline
               plain   no augmentation                      (10-minute rows)
               std+ls  + label smoothing 0.1                (10-minute rows)
--ablate [NAME ...] adds, on the first row, the autopilot with each decision (or those named)
forced off (`--without`), so the table shows what each bought. Budgets scale with --scale.
--baselines std runs only the named baselines (the others were measured once: plain and std+ls);
--no-autopilot leaves the autopilot itself out (measured in another run).
--busy runs everything with another process holding a core (a busy loop), as a shared machine
does: the budget must still be kept, and the wall column says whether it was.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name: (data, data options, budget seconds, baselines, target)
ROWS = {
    "fashion-10m": ("fashion-mnist", {}, 600, ["std", "plain", "std+ls"], ">= best baseline + 0.002 (mean of seeds)"),
    "fashion-15m": ("fashion-mnist", {}, 900, ["std"], ">= 10m; make demo >= 0.943"),
    "fashion-20m": ("fashion-mnist", {}, 1200, ["std"], ">= 0.945 (stretch 0.950), >= 15m"),
    "fashion-8k-3m": ("fashion-mnist", {"limit": 8000}, 180, ["std", "plain"], ">= best baseline - 1 SE"),
    "mnist1d-3m": ("mnist1d", {}, 180, ["std", "plain"], ">= 0.990"),
    "digits-1m": ("digits", {}, 60, ["std", "plain"], ">= best baseline - 1 SE"),
    # on a GPU (bench/gpu.sh): time to 94%
    "fashion-30s": ("fashion-mnist", {}, 30, ["std"], "GPU"),
    "fashion-60s": ("fashion-mnist", {}, 60, ["std"], "GPU: >= 0.94"),
    "fashion-2m": ("fashion-mnist", {}, 120, ["std"], "GPU"),
}
CPU_ROWS = ["fashion-10m", "fashion-15m", "fashion-20m", "fashion-8k-3m", "mnist1d-3m", "digits-1m"]
ABLATE = ("speed", "augmentation", "width", "decisions", "ema", "tta")
# the baseline process keeps this for its last validation and its one test evaluation, so it too ends
# within the budget (measured: 4-8 s on Fashion-MNIST)
END_SECONDS = 3.0
END_SHARE = 0.03


def baseline(data: str, options: dict, budget: float, out: str, recipe: str, seed: int) -> None:
    """A simple recipe, in this (fresh) process: trained for what is left of `budget` since the
    process started, then evaluated on the test split once."""
    from coach.pilot.session import process_started

    start = process_started()
    from coach.pilot.plan import augmentations
    from coach.config import make_config
    from coach.data import load_data
    from coach.evaluate import predict_proba, scores
    from coach.train import fit

    d = load_data(make_config({"data": {"name": data, **options}}).data)
    model = {"name": "mlp", "width": 256} if d.kind == "vector" else {"name": "convnet", "width": 32}
    cfg = make_config({"seed": seed, "data": {"name": data, **options}, "model": model,
                       "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4}, "schedule": {"name": "onecycle"},
                       "train": {"epochs": 1000, "progress": False, "monitor_every": 0, "fit_to_budget": True,
                                 "time_budget": 1.0}})
    if recipe in ("std", "std+ls"):  # the standard augmentation for the kind of data: 2-px crops, shifts
        cfg = cfg.replace(**next((v for k, v in augmentations(d.kind, d.input_shape).items() if k != "none"), {}))
    if recipe == "std+ls":
        cfg = cfg.replace(**{"regularize.label_smoothing": 0.1})
    left = budget * (1 - END_SHARE) - (time.time() - start) - END_SECONDS
    run = fit(cfg.replace(**{"train.time_budget": max(left, 1.0)}), run_dir=out, data=d)
    acc = scores(predict_proba(run.load_model("final"), d.test.x), d.test.y)["acc"]
    print(json.dumps({"test_acc": acc, "epochs": run.summary["epochs"], "speed": (run.summary.get("speed") or {})
                      .get("why")}), flush=True)


def timed(cmd: list[str], writes: Path | None = None) -> tuple[float, str]:
    """Wall time and stdout of cmd; exit 1 is a verdict (a session that stopped on hopeless data)
    only when the file it writes is there, else a crash: its stderr is shown."""
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode not in (0, 1) or (writes is not None and not writes.exists()):
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return time.time() - t0, p.stdout


def autopilot_run(name: str, base: Path, seed: int, budget: float, without: list[str]) -> dict:
    data, options, _, _, _ = ROWS[name]
    out = base / f"{name}-autopilot-s{seed}{'-without-' + '-'.join(without) if without else ''}"
    sets = [f"data.{k}={v}" for k, v in options.items()]
    wall, _ = timed([sys.executable, "-m", "coach", "autopilot", "--data", data, "--budget", f"{budget:.0f}s",
                     "--out", str(out), "--quiet", "--seed", str(seed)] + (["--set", *sets] if sets else [])
                    + (["--without", *without] if without else []), writes=out / "result.json")
    result = json.loads((out / "result.json").read_text())
    st = json.loads((out / "state.json").read_text())["stages"]
    search = st.get("search", {})
    return {"who": "autopilot" + (f" without {', '.join(without)}" if without else ""), "seed": seed,
            "test_acc": result.get("test_acc"), "wall": wall, "width": st.get("cost", {}).get("width"),
            "speed": st.get("cost", {}).get("settings"), "adopted": (search.get("judgement") or {}).get("adopted"),
            "tried": search.get("tried"), "final_epochs": st.get("final", {}).get("summary", {}).get("epochs"),
            "pick": st.get("choose", {}).get("pick"), "gap": st.get("choose", {}).get("gap")}


def baseline_run(name: str, base: Path, seed: int, budget: float, recipe: str) -> dict:
    data, options, _, _, _ = ROWS[name]
    wall, out = timed([sys.executable, __file__, "--baseline", data, json.dumps(options), str(budget),
                       str(base / f"{name}-{recipe}-s{seed}"), recipe, str(seed)])
    r = json.loads(out.strip().splitlines()[-1])
    return {"who": recipe, "seed": seed, "test_acc": r["test_acc"], "wall": wall, "final_epochs": r["epochs"],
            "speed": r["speed"]}


def row(name: str, scale: float, keep: Path | None, seeds: list[int], ablate: list[str],
        only_baselines: list[str] | None = None, autopilot: bool = True) -> list[dict]:
    _, _, budget, baselines, target = ROWS[name]
    baselines = [b for b in baselines if only_baselines is None or b in only_baselines]
    budget *= scale
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = keep or Path(tmp)
        for seed in seeds:
            if autopilot:
                out.append(autopilot_run(name, base, seed, budget, []))
                print("  " + json.dumps(out[-1]), flush=True)
            for recipe in baselines if seed == seeds[0] else baselines[:1]:  # the strongest on every seed
                out.append(baseline_run(name, base, seed, budget, recipe))
                print("  " + json.dumps(out[-1]), flush=True)
        for off in ablate:
            out.append(autopilot_run(name, base, seeds[0], budget, [off]))
            print("  " + json.dumps(out[-1]), flush=True)
    return [dict(r, row=name, budget=budget, target=target) for r in out]


def summary(rows: list[dict]) -> None:
    print(f"\n{'row':<14} {'who':<34} {'seeds':>5} {'test acc (mean)':>15} {'spread':>7} {'wall':>6}  notes")
    for name in dict.fromkeys(r["row"] for r in rows):
        for who in dict.fromkeys(r["who"] for r in rows if r["row"] == name):
            rs = [r for r in rows if r["row"] == name and r["who"] == who]
            accs = [r["test_acc"] or 0.0 for r in rs]
            notes = (f"width {rs[0].get('width')}, adopted {rs[0].get('adopted')}, final {rs[0]['final_epochs'] or 0:.1f} "
                     f"epochs, {rs[0].get('pick')}" if who == "autopilot" else f"{rs[0]['final_epochs']:.1f} epochs")
            print(f"{name:<14} {who:<34} {len(rs):>5} {statistics.mean(accs):>15.4f} "
                  f"{max(accs) - min(accs):>7.4f} {max(r['wall'] for r in rs):>5.0f}s  {notes}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        baseline(sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=sorted(ROWS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--ablate", nargs="*", choices=ABLATE, help="also the autopilot with each decision named (all "
                                                                 "when none is named) forced off, on the first row")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, help="keep the session and run directories here")
    ap.add_argument("--busy", action="store_true", help="another process holds a core throughout")
    ap.add_argument("--baselines", nargs="*", choices=["std", "plain", "std+ls"],
                    help="only these of each row's baselines (none: the autopilot alone)")
    ap.add_argument("--no-autopilot", action="store_true", help="the baselines and ablations only (the autopilot "
                                                                  "itself measured in another run)")
    args = ap.parse_args()
    names = args.only or CPU_ROWS
    rows = []
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        for i, name in enumerate(names):
            ablate = (args.ablate or list(ABLATE)) if args.ablate is not None and i == 0 else []
            rows += row(name, args.scale, args.keep, args.seeds, ablate, args.baselines, not args.no_autopilot)
    finally:
        if hog is not None:
            hog.kill()
    if args.busy:
        print("\n(another process held a core throughout)")
    summary(rows)


if __name__ == "__main__":
    main()
