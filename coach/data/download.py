"""Downloads that never leave a half-written file behind.

The bytes go to a temporary file in the destination folder, hashed while they stream;
only when the SHA-256 matches is the file renamed into place (an atomic rename on
POSIX). A failed or interrupted download leaves the cache as it was.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

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
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in [urls] if isinstance(urls, str) else urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                size = src.headers.get("Content-Length") if hasattr(src, "headers") else None
                progress = _Progress(dest.name, int(size) if size and size.isdigit() else None)
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                    progress.update(len(chunk))
                progress.close()
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != sha256:
                errors.append(f"{url}: checksum mismatch (got {h.hexdigest()}, expected {sha256})")
                continue
            os.replace(tmp, dest)
            return dest
        except OSError as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise UserError(f"could not download {dest.name}:\n  " + "\n  ".join(errors))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a whole file or nothing: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_copy_dir(src: Path, dest: Path) -> None:
    """Move a fully written folder into place in one rename."""
    if dest.exists():
        shutil.rmtree(src)
        return
    os.replace(src, dest)
