"""`coach train` and `coach transfer`: a run folder, its report, and a loud result."""
from __future__ import annotations

import argparse
from pathlib import Path

from coach.cli.common import add_config_args, add_device, add_out, add_quiet, err
from coach.errors import EXIT_NOT_LEARNED, EXIT_OK, UserError
from coach.fmt import seconds, sig


def cmd_train(args: argparse.Namespace) -> int:
    from coach.config import load_config
    from coach.train import fit

    if args.resume:
        if args.config or args.overrides or args.out:
            raise UserError("--resume continues a run exactly as it was configured; drop CONFIG, --set and --out")
        run = fit(resume=args.resume)
    else:
        overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
        overrides += ["train.progress=false"] if args.quiet else []
        cfg = load_config(args.config, overrides)
        out = Path(args.out) if args.out else None
        if args.check:
            from coach.babysit import check
            from coach.cli.check import format_findings
            from coach.train.run import default_run_dir, write_json
            out = out or default_run_dir(cfg)
            refuse_existing_run(out)
            result = check(cfg, say=None if args.quiet else print)
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "check.json", result.to_dict())
            if not args.quiet:
                print(format_findings(result))
        elif out is not None:
            refuse_existing_run(out)
        run = fit(cfg, run_dir=out)
    return finish_run(run, args.quiet)


def refuse_existing_run(out: Path) -> None:
    """A new run never overwrites one: a finished or interrupted run in OUT is kept."""
    if (out / "summary.json").exists() or (out / "checkpoints" / "last.pt").exists():
        raise UserError(f"--out {out} already holds a run: continue it with `coach train --resume {out}`, "
                        "or give another --out")


def finish_run(run, quiet: bool = False) -> int:  # noqa: ANN001
    """The result lines, the report, and the exit status: 3 when the model learned nothing
    (the last line then says so, and so does the report's first)."""
    from coach.babysit import diagnose_run
    from coach.report import render_run

    s, final = run.summary, run.summary["final"]
    if not (s.get("world_size", 1) == 1 or _rank() == 0):
        return EXIT_OK
    findings = diagnose_run(run.dir)
    if not quiet:
        for f in findings:
            print(f)
    print(f"run: {run.dir}")
    print(f"status: {s['status']}" + (f" ({s['stop_reason']})" if s["stop_reason"] else ""))
    print(f"steps {s['steps']}/{s['total_steps']}  time {seconds(s['time'])}  val acc {sig(final['val_acc'])}  "
          f"val loss {sig(final['val_loss'])}  best {s['best']['monitor']} {sig(s['best']['value'])}")
    if s["status"] == "interrupted":
        print(f"interrupted: resume with `coach train --resume {run.dir}`", flush=True)
    print(f"report: {render_run(run.dir)}")
    failed = [f for f in findings if f.code == "at_chance"] or \
        ([f for f in findings if f.code == "lr_too_high"][:1] if s["status"] == "diverged" else [])
    if failed and s["status"] != "interrupted":
        err(f"coach: failed: {failed[0].message}. {failed[0].advice}")
        return EXIT_NOT_LEARNED
    return EXIT_OK


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_initialized() else 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from coach.config import load_config
    from coach.evaluate import transfer

    overrides = [f"data.name={args.data}"] if args.data else []
    overrides += ["train.progress=false"] if args.quiet else []
    cfg = load_config(args.config, overrides + list(args.overrides))
    if args.out:
        refuse_existing_run(Path(args.out))
    run = transfer(args.source, cfg, mode=args.mode, run_dir=args.out, gradual=args.gradual,
                   freeze_bn=args.freeze_bn)
    return finish_run(run, args.quiet)


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model from a config",
                       description="Train a model. Config keys: seed, data.*, model.*, regularize.*, augment.*, "
                                   "optim.*, schedule.*, train.* (README: config reference).")
    add_config_args(t)
    add_out(t, "the run folder to write (default runs/<time>-<data>-<model>)", old="--run-dir")
    t.add_argument("--resume", metavar="DIR", help="continue an interrupted run")
    add_device(t, None, "same as --set train.device=...")
    t.add_argument("--check", action="store_true", help="run `coach check` first; its results go in the report")
    add_quiet(t)
    t.set_defaults(func=cmd_train)

    from coach.evaluate.transfer import MODES
    tr = sub.add_parser("transfer", help="reuse a trained network on new data")
    tr.add_argument("--from", dest="source", required=True, metavar="RUN_DIR|WEIGHTS")
    tr.add_argument("--data", help="target data source (same as --set data.name=...)")
    add_config_args(tr)
    tr.add_argument("--mode", default="auto", choices=MODES,
                    help="auto (default) decides by data size and similarity, as the lectures' 2x2 table")
    tr.add_argument("--gradual", action="store_true", help="finetune-all: unfreeze one block per epoch from the top")
    tr.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics frozen")
    add_out(tr, "the run folder to write", old="--run-dir")
    add_quiet(tr)
    tr.set_defaults(func=cmd_transfer)
