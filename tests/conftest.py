import os
from pathlib import Path

# One thread per process, here and in the commands the tests start, unless the caller says
# otherwise: the tests' models are small (a second thread gains them nothing here), and on shared
# CI cores a second thread waits for a busy one at every operation (a test took 2.8x longer
# there than here). coach's own choice of threads is tested on planted timings (test_cost).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import coach  # noqa: F401  (fills the registries)


def side_by_side(*commands, timeout=300, **kw):
    """Independent commands run at once (one thread each: the suite's two cores), returned as
    finished processes in the order given."""
    import subprocess
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
             for cmd in commands]
    done = []
    for cmd, p in zip(commands, procs):
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return done


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


def chromium_page(page: Path, tmp: Path) -> dict:
    """Open page in headless Chromium at 1280 px: how many images it has and how many loaded, how
    wide it is laid out (data attributes the page's own script sets), and its console messages."""
    import re
    import shutil
    import subprocess
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1280,1000", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom"]
    run = subprocess.run([exe, *flags, page.as_uri()], capture_output=True, text=True, timeout=120)
    attrs = {k: int(v) for k, v in re.findall(r'data-(plots|images|width|findings)="(\d+)"', run.stdout)}
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    return {**attrs, "console": console, "dom": run.stdout}


needs_chromium = pytest.mark.skipif(
    not (__import__("shutil").which("chromium") or __import__("shutil").which("chromium-browser")),
    reason="chromium not installed (make test installs it)")
