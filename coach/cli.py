"""`coach` on the command line: a thin shell over the Python API.

User errors (bad config, bad data, missing files) print one message and exit 2,
without a traceback. Training that diverged exits 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coach.errors import UserError

DEMO_OVERRIDES = ["data.name=fashion-mnist", "model.name=convnet", "model.width=32", "train.epochs=3",
                  "schedule.name=onecycle", "optim.lr=0.003", "augment.crop_padding=2"]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (defaults when left out)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.01 train.epochs=5")


def cmd_datasets(args: argparse.Namespace) -> int:
    from coach.config import DATASETS, DataConfig

    if args.fetch:
        source = DATASETS.get(args.fetch, "--fetch")
        cfg = DataConfig(name=args.fetch, path=args.data_dir)
        if source.fetch is None:
            print(f"{args.fetch}: nothing to fetch ({source.where(cfg)})")
        else:
            source.fetch(cfg)
            print(f"{args.fetch}: {source.where(cfg)}")
        return 0
    rows = [("name", "kind", "shape", "classes", "read from")]
    for name in DATASETS.names():
        s = DATASETS.get(name)
        rows.append((s.name, s.kind, s.shape, s.classes, s.where(DataConfig(name=name, path=args.data_dir))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from coach.config import load_config
    from coach.train import fit

    if args.resume:
        if args.config or args.overrides:
            raise UserError("--resume continues a run exactly as it was configured; drop CONFIG and --set")
        run = fit(resume=args.resume)
    else:
        overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
        run = fit(load_config(args.config, overrides), run_dir=args.run_dir)
    return _report_run(run)


def _report_run(run) -> int:  # noqa: ANN001
    s = run.summary
    final = s["final"]
    print(f"run: {run.dir}")
    print(f"status: {s['status']}" + (f" ({s['stop_reason']})" if s["stop_reason"] else ""))
    print(f"steps {s['steps']}/{s['total_steps']}  time {s['time']:.1f}s  val acc {final['val_acc']:.4f}  "
          f"val loss {final['val_loss']:.4f}  best {s['best']['monitor']} {s['best']['value']}")
    if s["status"] == "interrupted":
        print(f"interrupted: resume with `coach train --resume {run.dir}`")
    return 1 if s["status"] == "diverged" else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Until the autopilot lands: the default convnet on Fashion-MNIST for a short fixed budget."""
    from coach.config import load_config
    from coach.train import Run, evaluate_model, fit

    cfg = load_config(None, DEMO_OVERRIDES + list(args.overrides))
    print("coach demo: training a small convnet on Fashion-MNIST "
          f"({cfg.train.epochs} epochs, {cfg.schedule.name} LR schedule, Adam lr {cfg.optim.lr})")
    run = fit(cfg, run_dir=args.run_dir)
    _report_run(run)
    best = Run.open(run.dir).load_model("best")
    test = evaluate_model(best, run.data.test)
    print(f"test accuracy (best-on-validation weights): {test['acc']:.4f}   run directory: {run.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coach", description="Train neural networks the CS231n way, babysat.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("datasets", help="list data sources and where each is read from")
    d.add_argument("--fetch", metavar="NAME", help="download (checksummed) or generate a dataset now")
    d.add_argument("--data-dir", help="folder to look in first (also COACH_DATA_DIR)")
    d.set_defaults(func=cmd_datasets)

    t = sub.add_parser("train", help="train a model from a config",
                       description="Train a model. Config keys: seed, data.*, model.*, regularize.*, augment.*, "
                                   "optim.*, schedule.*, train.* (see examples/ and README).")
    _add_config_args(t)
    t.add_argument("--run-dir", help="where to write the run (default runs/<time>-<data>-<model>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="same as --set train.device=...")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("demo", help="the main job on Fashion-MNIST (what `make demo` runs)")
    m.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    m.add_argument("--run-dir")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import coach  # noqa: F401  (fills the registries)

        return args.func(args)
    except UserError as e:
        print(f"coach: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("coach: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
