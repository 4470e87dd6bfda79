"""`coach autopilot` and `coach demo`: the main job under a time budget."""
from __future__ import annotations

import argparse
from pathlib import Path

from coach.cli.common import add_out, add_quiet, duration, err
from coach.errors import EXIT_NOT_LEARNED, EXIT_OK, EXIT_PROBLEMS, UserError
from coach.fmt import seconds, sig

DEFAULT_BUDGET = 1200.0


def cmd_autopilot(args: argparse.Namespace) -> int:
    from coach.pilot import autopilot
    from coach.pilot.session import SessionInterrupted, process_started

    if not args.data and not args.resume:
        raise UserError("--data NAME|PATH is required (or --resume DIR)")
    given = [flag for flag, v in (("--data", args.data), ("--budget", args.budget), ("--set", args.overrides),
                                  ("--seed", args.seed), ("--out", args.out), ("--without", getattr(args, "without", None)))
             if v is not None and v != []]
    if args.resume and given:
        raise UserError(f"--resume {args.resume} continues the session with its own data, budget and seed: "
                        f"leave out {', '.join(given)}")
    options = {}
    for item in args.overrides or []:
        key, _, value = item.partition("=")
        if not key.startswith("data.") or not _:
            raise UserError(f"--set {item!r}: the autopilot takes only data.KEY=VALUE (e.g. data.limit=8000); "
                            "it chooses the model, optimizer and training itself")
        import yaml
        options[key.removeprefix("data.")] = yaml.safe_load(value)
    out = Path(args.resume or args.out) if (args.resume or args.out) else None
    try:
        # the budget runs from the process's start: importing torch and loading the data count
        result = autopilot(args.data, budget=args.budget or DEFAULT_BUDGET, out=out, resume=args.resume,
                           seed=args.seed or 0, started=process_started(), quiet=args.quiet, data_options=options,
                           without=getattr(args, "without", None) or ())
    except SessionInterrupted as e:
        where = out or "the session folder printed above"
        print(f"interrupted ({e}): the finished stages are kept")
        print(f"interrupted: resume with `coach autopilot --resume {where}`")
        return EXIT_OK
    print(f"report: {result['report']}")
    if result.get("failed"):
        err(f"coach: failed: {result['failed']}")
        return EXIT_NOT_LEARNED
    if result.get("stopped"):
        err(f"coach: stopped: {result['stopped']}")
        return EXIT_PROBLEMS
    print(f"test accuracy {sig(result['test_acc'])} in {seconds(result['time'])}; model: {result['model_dir']}")
    return EXIT_OK


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
             else f"a {seconds(args.budget)} budget, writing {out}"))
    args.overrides = None
    if resume:
        args.data = args.budget = args.seed = args.out = None
        args.resume = str(out)
    else:
        args.data, args.out, args.resume, args.seed = "fashion-mnist", str(out), None, 0
    return cmd_autopilot(args)


def add_commands(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("autopilot", help="the whole recipe under a time budget, with a report of every decision")
    a.add_argument("--data", help="a dataset name (coach datasets), an .npz file or a folder of class folders")
    a.add_argument("--budget", type=duration, help="total time: 90s, 20m, 1.5h, 1h30m (default 20m)")
    add_out(a, "the session folder (default autopilot/<time>-<data>)")
    a.add_argument("--resume", metavar="DIR", help="continue an interrupted session")
    a.add_argument("--seed", type=int, help="default 0")
    from coach.pilot.stages import WITHOUT
    a.add_argument("--without", nargs="+", action="extend", choices=WITHOUT, metavar="DECISION",
                   help=f"force a decision off, to see what it buys: {', '.join(WITHOUT)}")
    add_quiet(a)
    a.add_argument("--set", dest="overrides", nargs="+", action="extend", metavar="data.KEY=VALUE",
                   help="data options, e.g. --set data.limit=8000 data.val_fraction=0.2")
    a.set_defaults(func=cmd_autopilot)

    m = sub.add_parser("demo", help="the main job: autopilot on Fashion-MNIST (what `make demo` runs)")
    m.add_argument("--budget", type=duration, default="15m", help="default 15m")
    add_out(m, "the session folder (default runs/demo; a finished demo is kept, the next goes beside it)")
    m.set_defaults(out="runs/demo", quiet=False)
    m.set_defaults(func=cmd_demo)
