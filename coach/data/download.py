"""Downloads that never leave a half-written file behind.

The bytes go to a temporary file in the destination folder, hashed while they stream;
only when the SHA-256 matches is the file renamed into place (an atomic rename on
POSIX). A failed or interrupted download leaves the cache as it was.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from coach.atomic import atomic_write
from coach.errors import UserError


def cache_dir() -> Path:
    """Where coach keeps downloaded and generated data (COACH_CACHE overrides)."""
    root = os.environ.get("COACH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "coach")
    return Path(root)


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Progress:
    """Download progress: a tqdm bar for a person at a terminal or notebook, else a plain line on
    stderr every ~10 s (and at the end), so a log shows it moving without a redrawn bar."""

    def __init__(self, name: str, total: int | None):
        import time

        from coach.fmt import interactive
        self.name, self.total, self.done, self.clock = name, total, 0, time.monotonic
        self.last = self.clock()
        self.bar = None
        if interactive():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.clock() - self.last >= 10:
            self.last = self.clock()
            self.line()

    def line(self) -> None:
        of = f" of {self.total / 1e6:.1f} MB ({self.done / self.total:.0%})" if self.total else ""
        print(f"downloading {self.name}: {self.done / 1e6:.1f} MB{of}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self.line()


def download(urls: list[str] | str, dest: str | Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch the first URL that works into dest, verified against sha256, showing progress."""
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    errors = []
    for url in [urls] if isinstance(urls, str) else urls:
        try:  # streamed into coach.atomic's temporary file, renamed into place only if the hash matches
            atomic_write(dest, lambda out: _fetch(url, out, dest.name, sha256, timeout))
            return dest
        except (OSError, ChecksumMismatch) as e:
            errors.append(f"{url}: {e}")
    raise UserError(f"could not download {dest.name}:\n  " + "\n  ".join(errors))


class ChecksumMismatch(Exception):
    """The downloaded bytes are not the file the SHA-256 names (nothing is kept)."""


def _fetch(url: str, out: Any, name: str, sha256: str, timeout: float) -> None:
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as src:
        size = src.headers.get("Content-Length") if hasattr(src, "headers") else None
        progress = _Progress(name, int(size) if size and size.isdigit() else None)
        for chunk in iter(lambda: src.read(1 << 20), b""):
            h.update(chunk)
            out.write(chunk)
            progress.update(len(chunk))
        progress.close()
    if h.hexdigest() != sha256:
        raise ChecksumMismatch(f"checksum mismatch (got {h.hexdigest()}, expected {sha256})")
