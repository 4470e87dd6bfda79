"""What ensembles, snapshots, EMA and TTA add; and transfer learning against training from scratch.

Part 1, on Fashion-MNIST (a 10k-example training subset, to fit a 2-core budget) and
MNIST-1D: one model; a 5-model ensemble (seeds 0-4); a snapshot ensemble (one run of the
same length with a 3-cycle cosine schedule); the EMA weights of the single model; TTA.
Part 2: pretrain on Fashion-MNIST classes 0-4, then learn classes 5-9 from 100 examples per
class: linear head, fine-tune all, and from scratch, side by side. Test-split accuracy.

    python bench/evaluate.py [--epochs 4] [--limit 10000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coach  # noqa: E402
from coach.pilot.plan import ema_decay_for  # noqa: E402
from coach.evaluate import ensemble, evaluate_runs, predict_proba, scores, transfer  # noqa: E402


def part1(name: str, over: list[str], tta: str, epochs: int, root: Path) -> None:
    base = coach.make_config(overrides=[f"data.name={name}", f"train.epochs={epochs}", "train.progress=false",
                                        "train.monitor_every=0", "schedule.name=cosine", *over])
    data = coach.load_data(base.data)
    steps = epochs * (len(data.train) // base.train.batch_size)
    base = base.replace(**{"train.ema": ema_decay_for(steps)})  # an averaging window of ~10% of the run
    dirs = [coach.fit(base.replace(seed=s), run_dir=root / f"{name}-s{s}", data=data).dir for s in range(5)]
    snap = coach.fit(base.replace(**{"schedule.name": "cyclic", "schedule.cycles": 3, "train.snapshots": True}),
                     run_dir=root / f"{name}-snap", data=data).dir
    single = evaluate_runs([dirs[0]], tta=tta, split="test", data=data)["rows"]
    snap_rows = evaluate_runs([snap], split="test", data=data)["rows"]
    members = [predict_proba(coach.Run.open(d).load_model("best"), data.test.x) for d in dirs]
    ens = scores(ensemble(members), data.test.y)
    base_acc = single[0]["acc"]
    print(f"\n{name} ({epochs} epochs per run, test split)")
    print(f"  single model                      {base_acc:.4f}")
    for r in single[1:]:
        print(f"  {r['name'].split('(')[1].rstrip(')'):<22} tta={r['tta']:<10} {r['acc']:.4f} ({r['gain']:+.4f})")
    snap_ens = next(r for r in snap_rows if "snapshot" in r["name"])
    print(f"  snapshot ensemble (same compute)  {snap_ens['acc']:.4f} ({snap_ens['acc'] - base_acc:+.4f})")
    print(f"  5-model ensemble (5x compute)     {ens['acc']:.4f} ({ens['acc'] - base_acc:+.4f})")


def part2(epochs: int, limit: int, root: Path) -> None:
    # the source sees all of classes 0-4 (about 27k training images): transfer needs a real pretraining
    pre = coach.make_config(overrides=["data.classes=[0,1,2,3,4]", "train.epochs=3", "schedule.name=cosine",
                                       "optim.lr=0.003", "augment.crop_padding=2", "train.progress=false",
                                       "train.monitor_every=0"])
    source = coach.fit(pre, run_dir=root / "source").dir
    target = coach.make_config(overrides=["data.classes=[5,6,7,8,9]", "data.per_class=100", "train.epochs=30",
                                          "train.progress=false", "train.monitor_every=0", "optim.lr=0.003"])
    data = coach.load_data(target.data)
    print("\ntransfer: Fashion-MNIST classes 0-4 -> classes 5-9 from 100 examples per class (test split)")
    for mode in ("linear", "finetune-all"):
        run = transfer(source, target, mode=mode, run_dir=root / mode, data=data)
        acc = scores(predict_proba(coach.Run.open(run.dir).load_model("best"), data.test.x), data.test.y)["acc"]
        print(f"  {mode:<14} {acc:.4f}")
    scratch = coach.fit(target, run_dir=root / "scratch", data=data).dir
    acc = scores(predict_proba(coach.Run.open(scratch).load_model("best"), data.test.x), data.test.y)["acc"]
    print(f"  {'from scratch':<14} {acc:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--limit", type=int, default=10000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        part1("fashion-mnist", [f"data.limit={args.limit}", "augment.crop_padding=2"], "crops", args.epochs, root)
        part1("mnist1d", ["augment.shift=2", "model.width=32"], "shift", args.epochs * 5, root)
        part2(args.epochs, args.limit, root)


if __name__ == "__main__":
    main()
