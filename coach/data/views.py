"""Test-time augmentation (CS231n lecture 7): deterministic views of each test input whose
predicted probabilities are averaged.

  none        the input itself
  flip        the input and its horizontal mirror
  crops       5-crop (AlexNet's test-time crops): the image enlarged by 2*pad pixels (as if
              seen a little closer), then its 4 corners and its centre at the input size.
              Every view is image content, never padding
  crops-flip  10-crop: those 5 and their mirrors. Only for models trained with flips: a
              model never shown a mirror image is hurt by mirrored views
  translate   the image and 4 copies moved by max(1, pad // 2) pixels (up, down, left,
              right), zero-filled: the views random crops after zero padding train on
  translate-flip  those 5 and their mirrors
  multiscale  the image resized to 0.9x, 1x and 1.1x, centre-cropped or padded back
  shift       1-D signals: circular shifts by -s..s (s = length/20)

`trained_views` says which modes match how a model was trained: views a model never saw
in training are not averaged over.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from coach.errors import UserError

MODES = ("none", "flip", "crops", "crops-flip", "translate", "translate-flip", "multiscale", "shift")
IMAGE_ONLY = ("flip", "crops", "crops-flip", "translate", "translate-flip", "multiscale")


def check_mode(mode: str, kind: str) -> None:
    if mode not in MODES:
        raise UserError(f"--tta: unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if mode in IMAGE_ONLY and kind != "image":
        raise UserError(f"--tta {mode}: needs images; this data is {kind}"
                        + (" (use --tta shift for 1-D signals)" if kind == "signal" else " (use --tta none)"))
    if mode == "shift" and kind != "signal":
        raise UserError(f"--tta shift: for 1-D signals; this data is {kind}")


def crops(x: Tensor, pad: int) -> list[Tensor]:
    """The 4 corners and the centre of x enlarged by 2*pad pixels (bilinear), each of x's size."""
    h, w = x.shape[-2:]
    big = F.interpolate(x, size=(h + 2 * pad, w + 2 * pad), mode="bilinear", align_corners=False)
    corners = [(0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad), (pad, pad)]
    return [big[..., y:y + h, c:c + w] for y, c in corners]


def translations(x: Tensor, pad: int) -> list[Tensor]:
    """x and 4 copies moved by s = max(1, pad // 2) pixels, zero-filled as random crops are."""
    s = max(1, pad // 2)
    xp = F.pad(x, (s, s, s, s))
    h, w = x.shape[-2:]
    return [x] + [xp[..., s + dy:s + dy + h, s + dx:s + dx + w] for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s))]


def trained_views(kind: str, hflip: bool = False, crop_padding: int = 0, resized_crop: bool = False,
                  shift: int = 0) -> list[str]:
    """The TTA modes whose views a model trained this way has seen: mirrors only after flip
    training, translations only after padded-crop training, scaled crops only after
    resized-crop training, shifts only after shift training."""
    if kind == "image":
        modes = ["flip"] if hflip else []
        for trained, mode in ((crop_padding > 0, "translate"), (resized_crop, "crops")):
            if trained:
                modes += [mode] + ([f"{mode}-flip"] if hflip else [])
        return modes
    return ["shift"] if kind == "signal" and shift else []


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
    if mode == "crops-flip":
        v = crops(x, pad)
        return v + [c.flip(-1) for c in v]
    if mode == "translate":
        return translations(x, pad)
    if mode == "translate-flip":
        v = translations(x, pad)
        return v + [c.flip(-1) for c in v]
    if mode == "multiscale":
        return [rescale(x, s) for s in (0.9, 1.0, 1.1)]
    s = max(1, x.shape[-1] // 20)
    return [torch.roll(x, k, dims=-1) for k in range(-s, s + 1)]
