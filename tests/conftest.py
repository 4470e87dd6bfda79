import os
from pathlib import Path

import numpy as np
import pytest
import torch

import coach  # noqa: F401  (fills the registries)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own coach cache; generated datasets are shared per session."""
    shared = tmp_path_factory.getbasetemp() / "coach-cache"
    monkeypatch.setenv("COACH_CACHE", str(shared))
    monkeypatch.delenv("COACH_DATA_DIR", raising=False)
    torch.manual_seed(0)
    np.random.seed(0)
    yield


FASHION_DIR = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.exists(f"{FASHION_DIR}/train-images-idx3-ubyte.gz"),
                                   reason="Fashion-MNIST not installed (make test installs it)")


def chromium_plots(page: Path, tmp: Path) -> int:
    """Open page in headless Chromium; the number of images that loaded (the page counts them)."""
    import re
    import shutil
    import subprocess
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run([exe, *flags, page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-plots="(\d+)"', dom.stdout)
    return int(found.group(1)) if found else -1


needs_chromium = pytest.mark.skipif(
    not (__import__("shutil").which("chromium") or __import__("shutil").which("chromium-browser")),
    reason="chromium not installed (make test installs it)")
