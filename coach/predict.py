"""`coach predict MODEL_DIR INPUT`: classify an image, a folder of images or an .npz with a
trained model. The model's own preprocessing is applied (it lives inside the model); images
are resized to the model's input size, as the image-folder source does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from coach.data.sources import IMAGE_EXTENSIONS
from coach.errors import UserError
from coach.train.run import predictor, warn_scale


def read_inputs(path: str | Path, shape: tuple[int, ...], kind: str) -> tuple[list[str], torch.Tensor]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file or folder")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as d:
                x = d["x"] if "x" in d.files else d[d.files[0]]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{p}: not a readable .npz with an array x ({e})") from None
        x = x.astype(np.float32)
        if tuple(x.shape[1:]) != tuple(shape):
            if kind == "image" and x.ndim == 3 and shape[0] == 1 and tuple(x.shape[1:]) == tuple(shape[1:]):
                x = x[:, None]
            elif kind == "signal" and x.ndim == 2 and shape[0] == 1 and x.shape[1] == shape[1]:
                x = x[:, None]
            else:
                raise UserError(f"{p}: inputs of shape {tuple(x.shape[1:])} do not fit this model, which takes "
                                f"{tuple(shape)}")
        return [f"{p.name}[{i}]" for i in range(len(x))], torch.from_numpy(x)
    if kind != "image":
        raise UserError(f"{p}: this model takes {kind}s of shape {tuple(shape)}; give an .npz with x")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS) if p.is_dir() else [p]
    if not files:
        raise UserError(f"{p}: no images found")
    from PIL import Image, UnidentifiedImageError
    mode = "L" if shape[0] == 1 else "RGB"
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert(mode).resize((shape[2], shape[1]), Image.BILINEAR),
                                         dtype=np.float32) / 255.0)
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{f}: not a readable image ({e.__class__.__name__})") from None
    x = np.stack(arrays)
    x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
    return [str(f) for f in files], torch.from_numpy(np.ascontiguousarray(x))


def predict(model_dir: str | Path, inputs: str | Path, weights: str | None = None) -> list[dict[str, Any]]:
    """Classify inputs with what the folder predicts with (coach.train.run.predictor): an autopilot
    session as its test accuracy was measured (the chosen weights, test-time views and ensemble)
    unless `weights` names other weights; a run's best weights."""
    chosen, run = predictor(model_dir, weights)
    spec = run.spec
    names, x = read_inputs(inputs, tuple(spec["input_shape"]), spec["kind"])
    warn_scale(spec, x)
    conf, idx = chosen.probabilities(x).max(1)
    return [{"input": n, "class": spec["classes"][i], "index": int(i), "probability": float(c)}
            for n, i, c in zip(names, idx.tolist(), conf.tolist())]
