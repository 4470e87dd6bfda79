"""`coach` on the command line: a thin shell over the Python API.

User errors (bad config, bad data, missing files) print one message and exit 2,
without a traceback. Training that diverged exits 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coach.errors import UserError

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
        cfg = load_config(args.config, overrides)
        run_dir = Path(args.run_dir) if args.run_dir else None
        if args.check:
            from coach.babysit import check
            from coach.train.run import default_run_dir, write_json
            run_dir = run_dir or default_run_dir(cfg)
            result = check(cfg)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "check.json", result.to_dict())
            print(format_check(result))
        run = fit(cfg, run_dir=run_dir)
    code = _report_run(run)
    if run.summary.get("world_size", 1) == 1 or _rank() == 0:
        from coach.babysit import diagnose_run
        from coach.report import render_run
        for finding in diagnose_run(run.dir):
            print(finding)
        print(f"report: {render_run(run.dir)}")
    return code


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_initialized() else 0


def cmd_report(args: argparse.Namespace) -> int:
    from coach.report import render

    print(render(args.dir))
    return 0


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


def cmd_check(args: argparse.Namespace) -> int:
    """The babysitting checklist; exit 0 healthy, 1 problems found, 2 user error."""
    import json

    from coach.babysit import check, problems
    from coach.config import load_config

    cfg = load_config(args.config, args.overrides)
    result = check(cfg, probe_steps=args.probe_steps)
    if args.out:
        from coach.train.run import write_json
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "check.json", result.to_dict())
    if args.json:
        print(json.dumps([f.to_dict() for f in result.findings], indent=2))
    else:
        print(format_check(result))
    return 0 if not problems(result.findings) else 1


def format_check(result) -> str:  # noqa: ANN001
    s = result.steps
    lines = []
    if "data" in s:
        d = s["data"]
        lines.append(f"1. data: {d['train']} train / {d['val']} val / {d['test']} test, {d['classes']} classes, "
                     f"input {d['input_shape']}; after {d['preprocess']}: mean {d['mean']:.3g}, std {d['std']:.3g}")
    if "init" in s:
        stds = ", ".join(f"{layer['std']:.2g}" for layer in s["init"])
        lines.append(f"2. activations at init (std per layer): {stds}")
    if "initial_loss" in s:
        i = s["initial_loss"]
        lines.append(f"3. initial loss {i['loss']:.4f} (expected {i['expected']:.4f}); "
                     f"with regularization {i['with_regularization']:.4f}")
    if "gradcheck" in s:
        lines.append(f"4. gradient check: max relative error {s['gradcheck']['max_rel_error']:.2e} "
                     f"({s['gradcheck']['verdict']})")
    if "overfit" in s:
        o = s["overfit"]
        lines.append(f"5. overfit {o['samples']} examples: {o['train_acc']:.0%} train accuracy after {o['steps']} steps")
    if "lr_range" in s:
        r = s["lr_range"]
        probe = ", ".join(f"{p['lr']:g}: {p['first']:.3g}->{p['last']:.3g}" for p in s["lr_probe"])
        lines.append(f"6. LR range test suggests {r['suggested_lr'] or float('nan'):.2g}; probe (loss first->last) "
                     f"{probe}")
    lines.append("")
    lines += [str(f) for f in result.findings] or ["no findings"]
    lines.append("healthy" if result.healthy else "problems found")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from coach.evaluate import evaluate_runs, format_table

    result = evaluate_runs(args.runs, tta=args.tta, use_ensemble=args.ensemble, split=args.split,
                           device=args.device)
    print(format_table(result))
    print(f"saved: {Path(args.runs[0]) / f'evaluation-{args.split}.json'}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from coach.config import load_config
    from coach.evaluate import transfer

    overrides = [f"data.name={args.data}"] if args.data else []
    cfg = load_config(args.config, overrides + list(args.overrides))
    run = transfer(args.source, cfg, mode=args.mode, run_dir=args.run_dir, gradual=args.gradual,
                   freeze_bn=args.freeze_bn)
    return _report_run(run)


def cmd_search(args: argparse.Namespace) -> int:
    from coach.config import load_config, parse_duration
    from coach.search import search, work

    budget = parse_duration(args.budget) if args.budget else None
    if args.worker:
        if not args.study:
            raise UserError("--worker needs --study NAME (and --storage URL)")
        sweep = Path(args.sweep_dir) if args.sweep_dir else Path("sweeps") / f"worker-{args.study}"
        work(args.storage, args.study, sweep, args.worker_index, budget)
        return 0
    cfg = load_config(args.config, args.overrides)
    summary = search(cfg, strategy=args.strategy, trials=args.trials, sweep_dir=args.sweep_dir, storage=args.storage,
                     workers=args.workers, budget=budget, stages=args.stages, pruner=args.pruner, study=args.study)
    best = summary["best"]
    sweep_dir = Path(summary["trials"][0]["run_dir"]).parents[1] if summary["trials"] and \
        summary["trials"][0]["run_dir"] else Path(args.sweep_dir or ".")
    print(f"{len(summary['trials'])} trials, {summary['compute_steps']} training steps, {summary['time']:.0f}s")
    for st in summary["stages"]:
        print(f"  {st['study']}: {st['trials']} trials x {st['epochs']} epochs on {st['space']}"
              + "".join(f"\n    note: {n}" for n in st["notes"]))
    if best:
        print(f"best {summary['monitor']} {best['value']:.4f} with {best['params']} ({best['run_dir']})")
    from coach.report import render_sweep
    print(f"command center: {render_sweep(sweep_dir)}")
    return 0


def cmd_autopilot(args: argparse.Namespace) -> int:
    from coach.autopilot import autopilot
    from coach.autopilot.session import process_started
    from coach.config import parse_duration

    if not args.data and not args.resume:
        raise UserError("--data NAME|PATH is required (or --resume DIR)")
    given = [flag for flag, v in (("--data", args.data), ("--budget", args.budget), ("--set", args.overrides),
                                  ("--seed", args.seed), ("--out", args.out)) if v is not None and v != []]
    if args.resume and given:
        raise UserError(f"--resume {args.resume} continues the session with its own data, budget and seed: "
                        f"leave out {', '.join(given)}")
    try:
        budget = parse_duration(args.budget or "20m")
    except ValueError as e:
        raise UserError(f"--budget: {e}") from None
    # the budget runs from the process's start: importing torch and loading the data count
    options = {}
    for item in args.overrides or []:
        key, _, value = item.partition("=")
        if not key.startswith("data.") or not _:
            raise UserError(f"--set {item!r}: the autopilot takes only data.KEY=VALUE (e.g. data.limit=8000); "
                            "it chooses the model, optimizer and training itself")
        import yaml
        options[key.removeprefix("data.")] = yaml.safe_load(value)
    result = autopilot(args.data, budget=budget, out=args.out, resume=args.resume, seed=args.seed or 0,
                       started=process_started(), quiet=getattr(args, "quiet", False), data_options=options)
    if result.get("stopped"):
        print(f"stopped: {result['stopped']}")
    else:
        print(f"test accuracy {result['test_acc']:.4f} in {result['time']:.0f}s; model: {result['model_dir']}")
    print(f"report: {result['report']}")
    return 1 if result.get("stopped") else 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from coach.predict import predict

    rows = predict(args.model, args.input, args.weights)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['input']}: {r['class']} ({r['probability']:.1%})")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from coach.evaluate import zoo

    rows = zoo(args.roots or None)
    if not rows:
        print("no pretrained runs found (looked in runs/ and COACH_ZOO)")
    for r in rows:
        print(f"{r['dir']}  {r['data']}  {r['model']}  {r['classes']} classes  input {r['input_shape']}  "
              f"best {r['best']}")
    return 0


def demo_folder(out: Path) -> tuple[Path, bool]:
    """Where `make demo` runs again: an interrupted demo is resumed; a finished one is kept and
    the new demo goes to OUT-2, OUT-3, ... Returns (folder, resume)."""
    if not (out / "state.json").exists():
        return out, False
    if not (out / "result.json").exists():
        return out, True
    n = 2
    while Path(f"{out}-{n}").exists():
        n += 1
    return Path(f"{out}-{n}"), False


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: the autopilot on Fashion-MNIST under a 15-minute budget."""
    out, resume = demo_folder(Path(args.out))
    print("coach demo: the autopilot on Fashion-MNIST (progress per stage below); "
          + (f"resuming the interrupted demo in {out} with its own budget" if resume
             else f"a {args.budget} budget, writing {out}"))
    args.overrides, args.quiet = None, False
    if resume:
        args.data = args.budget = args.seed = args.out = None
        args.resume = str(out)
    else:
        args.data, args.out, args.resume, args.seed = "fashion-mnist", str(out), None, 0
    return cmd_autopilot(args)


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
    t.add_argument("--check", action="store_true", help="run `coach check` first; its results go in the report")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("check", help="run the lectures' babysitting checklist on a config")
    _add_config_args(c)
    c.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    c.add_argument("--out", help="also write check.json into this folder")
    c.add_argument("--probe-steps", type=int, default=100, help="iterations per LR in the quick probe")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("report", help="write report.html for a run or a sweep (offline page)")
    r.add_argument("dir", metavar="RUN_DIR|SWEEP_DIR")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("evaluate", help="accuracy per model and what ensembles, EMA, snapshots and TTA add")
    e.add_argument("runs", nargs="+", metavar="RUN_DIR")
    e.add_argument("--tta", default="none", help="none | flip | crops | crops-flip | multiscale | shift (1-D signals)")
    e.add_argument("--ensemble", action="store_true", help="also average the runs' probabilities")
    e.add_argument("--split", default="val", help="val (default) or test: the test split is read only when asked")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("transfer", help="reuse a trained network on new data")
    tr.add_argument("--from", dest="source", required=True, metavar="RUN_DIR|WEIGHTS")
    tr.add_argument("--data", help="target data source (same as --set data.name=...)")
    _add_config_args(tr)
    tr.add_argument("--mode", default="auto", help="linear | finetune-top | finetune-all | auto")
    tr.add_argument("--gradual", action="store_true", help="finetune-all: unfreeze one block per epoch from the top")
    tr.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics frozen")
    tr.add_argument("--run-dir")
    tr.set_defaults(func=cmd_transfer)

    se = sub.add_parser("search", help="hyperparameter search over the config's search: section")
    _add_config_args(se)
    se.add_argument("--strategy", default="random", help="random | grid | coarse-to-fine | tpe")
    se.add_argument("--trials", type=int, default=20)
    se.add_argument("--budget", help="stop starting trials after this long, e.g. 20m")
    se.add_argument("--workers", type=int, default=1, help="processes on this machine")
    se.add_argument("--storage", help="journal file (default: SWEEP_DIR/journal.log) or postgresql://... URL")
    se.add_argument("--sweep-dir")
    se.add_argument("--study", help="study name (default coach)")
    se.add_argument("--stages", type=int, default=3, help="coarse-to-fine stages")
    se.add_argument("--pruner", default=None, choices=("asha", "median", "hyperband", "none"),
                    help="prunes trials on the validation metric; default: hyperband for tpe, asha otherwise")
    se.add_argument("--worker", action="store_true", help="join an existing study as one more worker")
    se.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    se.set_defaults(func=cmd_search)

    a = sub.add_parser("autopilot", help="the whole recipe under a time budget, with a report of every decision")
    a.add_argument("--data", help="a dataset name (coach datasets), an .npz file or a folder of class folders")
    a.add_argument("--budget", help="total time, e.g. 20m, 90s, 1h (default 20m)")
    a.add_argument("--out", help="session directory (default autopilot/<time>-<data>)")
    a.add_argument("--resume", metavar="DIR", help="continue an interrupted session")
    a.add_argument("--seed", type=int, help="default 0")
    a.add_argument("--quiet", action="store_true", help="print only the result")
    a.add_argument("--set", dest="overrides", nargs="+", action="extend", metavar="data.KEY=VALUE",
                   help="data options, e.g. --set data.limit=8000 data.val_fraction=0.2")
    a.set_defaults(func=cmd_autopilot)

    pr = sub.add_parser("predict", help="classify an image, a folder of images or an .npz")
    pr.add_argument("model", metavar="MODEL_DIR", help="a run directory or an autopilot session")
    pr.add_argument("input", metavar="INPUT")
    pr.add_argument("--weights", help="best | final | ema (default: best; for an autopilot session, what it chose)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    z = sub.add_parser("zoo", help="list the pretrained runs coach produced on this machine")
    z.add_argument("roots", nargs="*", help="folders to search (default runs/ and COACH_ZOO)")
    z.set_defaults(func=cmd_zoo)

    m = sub.add_parser("demo", help="the main job: autopilot on Fashion-MNIST (what `make demo` runs)")
    m.add_argument("--budget", default="15m")
    m.add_argument("--out", default="runs/demo")
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
