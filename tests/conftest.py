import os

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
