"""Checkpoints that survive kill -9: written atomically, read without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts: `torch.save`
to a temporary file in the same folder, fsync, then an atomic rename over the old one.
A crash mid-write leaves the previous checkpoint intact. Loading always uses
`torch.load(weights_only=True)`; there is no fallback to unsafe loading.

RNG states are stored in that same safe form (numpy's as a tensor plus ints), so
a resumed run continues the exact random streams of the interrupted one.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coach.atomic import atomic_write
from coach.errors import UserError


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save, whole or not at all (coach.atomic)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file, or one holding objects that need unsafe unpickling
        raise UserError(refusal(path, e)) from None


def refusal(path: Path, e: Exception) -> str:
    """One line for a checkpoint coach will not load, naming the file and what to do (instead
    of torch's page on weights_only)."""
    text = str(e)
    if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
        why = "it holds Python objects whose loading could run code, and coach only loads plain tensors"
    else:
        why = f"it is truncated or corrupt ({e.__class__.__name__})"
    return f"{path}: not loaded: {why}; use a checkpoint coach wrote, or retrain (coach train --resume needs one)"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
