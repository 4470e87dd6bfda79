"""`coach search`: trials as lines, an honest Ctrl-C, the command center at the end."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from coach.cli.common import add_config_args, add_out, add_quiet, duration, speaker
from coach.errors import EXIT_OK, UserError
from coach.fmt import params, seconds, sig


def cmd_search(args: argparse.Namespace) -> int:
    from coach.config import load_config
    from coach.data import resolved
    from coach.sweep import SearchInterrupted, search, work

    say = speaker(args)
    if args.worker:
        if not args.study:
            raise UserError("--worker needs --study NAME (and --storage URL)")
        sweep = Path(args.out) if args.out else Path("sweeps") / f"worker-{args.study}"
        try:
            work(args.storage, args.study, sweep, args.worker_index, args.budget, say)
        except SearchInterrupted:
            pass  # the coordinator prints how to resume
        return EXIT_OK
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("sweeps") / time.strftime(f"%Y%m%d-%H%M%S-{resolved(cfg.data).name}")
    try:
        summary = search(cfg, strategy=args.strategy, trials=args.trials, sweep_dir=out, storage=args.storage,
                         workers=args.workers, budget=args.budget, stages=args.stages, pruner=args.pruner,
                         study=args.study, say=say)
    except SearchInterrupted as e:
        again = resume_command(out)
        what = f"trial {e.trial + 1} was cut short: it is not counted and runs again" if e.trial is not None \
            else "stopped between trials"
        print(f"interrupted: {what}; finished trials are kept in {out}")
        print(f"interrupted: resume with `{again}`")
        return EXIT_OK
    best = summary["best"]
    print(f"{len(summary['trials'])} trials, {summary['compute_steps']} training steps, {seconds(summary['time'])}")
    for st in summary["stages"]:
        print(f"  {st['study']}: {st['trials']} trials x {st['epochs']} epochs on {st['space']}"
              + "".join(f"\n    note: {n}" for n in st["notes"]))
    if best:
        print(f"best {summary['monitor']} {sig(best['value'])} with {params(best['params'])} ({best['run_dir']})")
    from coach.report import render_sweep
    print(f"command center: {render_sweep(out)}")
    return EXIT_OK


def resume_command(out: Path) -> str:
    """The command that continues this search: the same one, writing to the same folder."""
    argv = list(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("coach", "__main__.py")) else ["search"]
    if "--out" not in argv and "--sweep-dir" not in argv:
        argv += ["--out", str(out)]
    return "coach " + " ".join(shlex.quote(a) for a in argv)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from coach.sweep import PRUNERS, STRATEGIES
    se = sub.add_parser("search", help="hyperparameter search over the config's search: section")
    add_config_args(se)
    se.add_argument("--strategy", default="random", choices=STRATEGIES, help="default random")
    se.add_argument("--trials", type=int, default=20, help="finished trials to reach (default 20)")
    se.add_argument("--budget", type=duration, help="stop starting trials after this long: 90s, 20m, 1.5h, 1h30m")
    se.add_argument("--workers", type=int, default=1, help="processes on this machine")
    se.add_argument("--storage", help="journal file (default: OUT/journal.log) or postgresql://... URL")
    add_out(se, "the sweep folder (default sweeps/<time>-<data>); running the same command again continues it",
            old="--sweep-dir")
    se.add_argument("--study", help="study name (default coach)")
    se.add_argument("--stages", type=int, default=3, help="coarse-to-fine stages")
    se.add_argument("--pruner", default=None, choices=PRUNERS,
                    help="prunes trials on the validation metric; default: hyperband for tpe, asha otherwise")
    se.add_argument("--worker", action="store_true", help="join an existing study as one more worker")
    se.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    add_quiet(se)
    se.set_defaults(func=cmd_search)
