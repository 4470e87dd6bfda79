"""`coach check`: the lectures' babysitting checklist, a line per step as it finishes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from coach.cli.common import add_config_args, add_out, add_quiet, speaker
from coach.errors import EXIT_OK, EXIT_PROBLEMS


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 healthy, 1 problems found, 2 user error."""
    from coach.babysit import check, problems
    from coach.config import load_config

    cfg = load_config(args.config, args.overrides)
    say = None if args.json else speaker(args)
    result = check(cfg, probe_steps=args.probe_steps, say=say)
    if args.out:
        from coach.report.check_report import render_check
        from coach.train.run import write_json
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "check.json", {**result.to_dict(), "config": cfg.to_dict()})
        page = render_check(args.out)
    if args.json:
        print(json.dumps([f.to_dict() for f in result.findings], indent=2))
    else:
        print(format_findings(result))
        if args.out:
            print(f"report: {page}")
    return EXIT_OK if not problems(result.findings) else EXIT_PROBLEMS


def format_check(result) -> str:  # noqa: ANN001
    """Every step's line, then the findings (most severe first) and the verdict."""
    from coach.babysit.checks import describe_step

    lines = [describe_step(n, result.steps) for n in ("data", "init", "initial_loss", "gradcheck", "overfit",
                                                      "lr_range") if n in result.steps]
    return "\n".join(lines + ["", format_findings(result)])


def format_findings(result) -> str:  # noqa: ANN001
    """The findings, most severe first, led by the one thing to fix first when anything is wrong."""
    from coach.babysit.findings import RANK
    found = sorted(result.findings, key=lambda f: RANK[f.severity])
    lines = [str(f) for f in found] or ["no findings"]
    if found and found[0].severity != "info":
        lines.insert(0, f"fix first: {found[0].code}: {found[0].advice}")
    return "\n".join(lines + ["healthy" if result.healthy else "problems found"])


def add_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check", help="run the lectures' babysitting checklist on a config")
    add_config_args(c)
    c.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    add_out(c, "also write check.json and report.html into this folder")
    c.add_argument("--probe-steps", type=int, default=100, help="iterations per LR in the quick probe")
    add_quiet(c)
    c.set_defaults(func=cmd_check)
