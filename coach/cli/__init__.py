"""`coach` on the command line: a thin shell over the Python API, one module per group of commands.

One vocabulary: every command that writes a folder takes --out DIR and writes report.html in
it; every command that reads one takes any coach folder. Exit codes are in coach.errors (and
README): 0 done, 1 check found problems, 2 user error, 3 the model learned nothing, 130 a
second Ctrl-C. User errors print one message, without a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from coach.cli import autopilot, check, data, evaluate, search, train
from coach.cli.autopilot import demo_folder
from coach.cli.check import format_check
from coach.errors import EXIT_ABORTED, UserError

__all__ = ["build_parser", "main", "demo_folder", "format_check"]


def build_parser() -> argparse.ArgumentParser:
    from coach.version import __version__

    p = argparse.ArgumentParser(prog="coach", description="Train neural networks the CS231n way, babysat.")
    p.add_argument("--version", action="version", version=f"coach {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, train, check, search, evaluate, autopilot):
        group.add_commands(sub)
    return p


def show_warning(message: Warning | str, category: type[Warning], *rest: object, **kw: object) -> None:
    """coach's own warnings as one line for a person, like its errors (no file and line number)."""
    print(f"coach: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = show_warning
    try:
        import coach  # noqa: F401  (fills the registries)

        return args.func(args)
    except UserError as e:
        print(f"coach: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("coach: aborted", file=sys.stderr)
        return EXIT_ABORTED
