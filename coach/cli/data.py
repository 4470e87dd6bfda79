"""`coach datasets`: the sources, where each is read from, and fetching one now."""
from __future__ import annotations

import argparse

from coach.errors import EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    from coach.config import DATASETS, DataConfig

    def section(name: str) -> DataConfig:  # unvalidated: a data dir need not suit every source listed
        return DataConfig.model_construct(**{**DataConfig().model_dump(), "name": name, "path": args.data_dir})

    def where(name: str) -> str:
        return DATASETS.get(name).where(section(name))

    if args.fetch:
        source = DATASETS.get(args.fetch, "--fetch")
        if source.fetch is None:
            print(f"{args.fetch}: nothing to fetch ({where(args.fetch)})")
        else:
            print(f"{args.fetch}: fetching ({where(args.fetch)})", flush=True)
            source.fetch(section(args.fetch))
            print(f"{args.fetch}: {where(args.fetch)}")
        return EXIT_OK
    rows = [("name", "kind", "shape", "classes", "read from")]
    for name in DATASETS.names():
        s = DATASETS.get(name)
        rows.append((s.name, s.kind, s.shape, s.classes, where(name)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("datasets", help="list data sources and where each is read from")
    d.add_argument("--fetch", metavar="NAME", help="download (checksummed, with progress) or generate a dataset now")
    d.add_argument("--data-dir", help="folder to look in first (also COACH_DATA_DIR)")
    d.set_defaults(func=cmd_datasets)
