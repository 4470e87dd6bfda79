"""Data a caller already holds: numpy arrays or tensors, a torch Dataset, a DataLoader.

Everywhere Python takes data (`coach.fit`, `coach.check`) it also takes these, and they go
through the same checks as a file (shapes, NaN, label range, empty classes) and the same
split and preprocessing as every source:

    (x, y)                      or (x, y, x_test, y_test)
    {"x":, "y":, "x_test":, "y_test":, "classes": [...]}   the keys of an .npz
    a torch Dataset of (input, label) pairs, or a DataLoader over one

coach holds its data in memory (every source does), so a Dataset or DataLoader is read once,
in order, and stacked; its transforms run once, at that moment (coach's own augmentation
runs per batch: `augment.*`). The config then names the source `arrays`: a run trained on
them records that its data came from the caller, and resuming it needs them again.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coach.config import Config
from coach.data import Data, split_data
from coach.data.sources import raw_from_arrays
from coach.errors import UserError

WHERE = "data passed in memory"
KEYS = ("x", "y", "x_test", "y_test", "classes")


def in_memory(obj: Any) -> bool:
    """Is obj anything but None or a loaded Data (so as_data reads it, or says why it cannot)?"""
    return obj is not None and not isinstance(obj, Data)


def as_data(obj: Any, cfg: Config) -> tuple[Data, Config]:
    """(Data, the config with data.name=arrays) for data the caller holds."""
    arrays = _arrays(obj)
    for key in ("x", "y", "x_test", "y_test"):
        if arrays.get(key) is not None:
            arrays[key] = _numpy(arrays[key], key)
    if arrays.get("classes") is not None:
        arrays["classes"] = np.asarray([str(c) for c in arrays["classes"]])
    cfg = cfg.replace(**{"data.name": "arrays", "data.path": None})
    return split_data(raw_from_arrays(arrays, cfg.data, WHERE), cfg.data), cfg


def caller_order(obj: Any, n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n (inputs, labels) in the order the caller holds them (as_data's split reorders
    them): where a label sits against its input is evidence of a misalignment."""
    arrays = _arrays(obj)
    return (torch.as_tensor(_numpy(arrays["x"], "x")[:n]).float(),
            torch.as_tensor(_numpy(arrays["y"], "y")[:n]).long())


def _arrays(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        unknown = sorted(set(obj) - set(KEYS))
        if unknown or "x" not in obj or "y" not in obj:
            raise UserError(f"data: a dict needs keys x and y (optionally x_test, y_test, classes); got "
                            f"{sorted(obj)}" + (f" ({unknown} not understood)" if unknown else ""))
        return dict(obj)
    if isinstance(obj, (tuple, list)):
        if len(obj) not in (2, 4):
            raise UserError(f"data: a tuple of {len(obj)} items; pass (x, y) or (x, y, x_test, y_test)")
        return dict(zip(("x", "y", "x_test", "y_test"), obj))
    if isinstance(obj, torch.utils.data.DataLoader):
        return _stack(((x, y) for x, y in _pairs(obj)), batched=True)
    if isinstance(obj, torch.utils.data.Dataset):
        return _stack(_pairs(obj), batched=False)
    if isinstance(obj, str) or hasattr(obj, "__fspath__"):
        raise UserError(f"data: {str(obj)!r}: a source name or a path goes in the config (data.name, data.path), "
                        "e.g. coach.make_config(overrides=['data.path=my.npz']); data= takes data held in memory")
    raise UserError(f"data: {type(obj).__name__} is not data coach can read; pass (x, y) arrays or tensors, a dict "
                    "of them, a torch Dataset or a DataLoader (a source name or a path goes in the config)")


def _pairs(items: Any) -> Any:
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise UserError(f"data: item {i} of the {type(items).__name__} is {type(item).__name__}; coach needs "
                            "(input, label) pairs")
        yield item[0], item[1]


def _stack(pairs: Any, batched: bool) -> dict[str, Any]:
    xs, ys = [], []
    for x, y in pairs:
        xs.append(_numpy(x, "x"))
        ys.append(_numpy(y, "y"))
    if not xs:
        raise UserError("data: the Dataset/DataLoader yielded no examples")
    try:
        return {"x": np.concatenate(xs) if batched else np.stack(xs),
                "y": np.concatenate(ys) if batched else np.stack(ys)}
    except ValueError as e:
        raise UserError(f"data: the examples do not all have one shape ({e})") from None


def _numpy(v: Any, key: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    try:
        a = np.asarray(v)
    except (TypeError, ValueError) as e:
        raise UserError(f"data: {key} cannot be read as an array ({e})") from None
    if a.dtype == object:
        raise UserError(f"data: {key} is not a numeric array (examples of different shapes or types?)")
    return a
