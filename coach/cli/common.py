"""What every command shares: one vocabulary for options, duration and folder arguments,
and how a command speaks (lines when not a terminal, --quiet)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable


DEVICES = ("auto", "cpu", "cuda", "mps")


def duration(text: str) -> float:
    """argparse type: '90s', '20m', '1.5h', '1h30m' -> seconds; a bare number is refused."""
    from coach.config import parse_duration

    try:
        return float(parse_duration(text, bare_seconds=False))  # type: ignore[arg-type]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (defaults when left out)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.01 train.epochs=5 (README: config reference)")


def add_out(p: argparse.ArgumentParser, what: str, old: str | None = None) -> None:
    """--out DIR: every command that writes a folder. `old`: the flag it had before (still read)."""
    p.add_argument("--out", metavar="DIR", help=what)
    if old:
        p.add_argument(old, dest="out", help=argparse.SUPPRESS)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the result (no progress)")


def add_device(p: argparse.ArgumentParser, default: str | None = "auto",
               help: str = "auto (default: cuda, else mps, else cpu) or one of them") -> None:
    p.add_argument("--device", choices=DEVICES, default=default, help=help)


def speaker(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where progress lines go: stdout, flushed at once (so a pipe or a log file sees them as
    they happen), or nowhere with --quiet."""
    if getattr(args, "quiet", False):
        return None

    def say(line: str) -> None:
        print(line, flush=True)

    return say


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
