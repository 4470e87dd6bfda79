"""Test-time augmentation (CS231n lecture 7): deterministic views of each test input whose
predicted probabilities are averaged.

  none        the input itself
  flip        the input and its horizontal mirror
  crops       10-crop: the 4 corners and the centre of the zero-padded image, and their
              mirrors (AlexNet's test-time crops, at the training crop_padding scale)
  multiscale  the image resized to 0.9x, 1x and 1.1x, centre-cropped or padded back
  shift       1-D signals: circular shifts by -s..s (s = length/20)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from coach.errors import UserError

MODES = ("none", "flip", "crops", "multiscale", "shift")
IMAGE_ONLY = ("flip", "crops", "multiscale")


def check_mode(mode: str, kind: str) -> None:
    if mode not in MODES:
        raise UserError(f"--tta: unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if mode in IMAGE_ONLY and kind != "image":
        raise UserError(f"--tta {mode}: needs images; this data is {kind}"
                        + (" (use --tta shift for 1-D signals)" if kind == "signal" else " (use --tta none)"))
    if mode == "shift" and kind != "signal":
        raise UserError(f"--tta shift: for 1-D signals; this data is {kind}")


def crops(x: Tensor, pad: int) -> list[Tensor]:
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad))
    corners = [(0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad), (pad, pad)]
    views = [xp[..., y:y + h, c:c + w] for y, c in corners]
    return views + [v.flip(-1) for v in views]


def rescale(x: Tensor, scale: float) -> Tensor:
    h, w = x.shape[-2:]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    if nh >= h:  # centre crop
        top, left = (nh - h) // 2, (nw - w) // 2
        return y[..., top:top + h, left:left + w]
    top, left = (h - nh) // 2, (w - nw) // 2  # pad back with zeros
    return F.pad(y, (left, w - nw - left, top, h - nh - top))


def views(x: Tensor, mode: str, pad: int = 2) -> list[Tensor]:
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "crops":
        return crops(x, pad)
    if mode == "multiscale":
        return [rescale(x, s) for s in (0.9, 1.0, 1.1)]
    s = max(1, x.shape[-1] // 20)
    return [torch.roll(x, k, dims=-1) for k in range(-s, s + 1)]
