"""Batched data augmentation on the training device (CS231n lecture 7, "Data Augmentation").

Each transform draws independent parameters per sample from an explicit
`torch.Generator`, so a checkpoint can hold the generator's state and a resumed run
draws the same augmentations. Inputs are in natural units (images in [0, 1]) before
preprocessing. Written on plain torch ops: each is a handful of vectorized tensor
operations over the whole batch, with no per-sample Python loop.

  images  hflip; random crop after zero padding (translation); random resized crop
          (scale, aspect ratio); brightness and contrast jitter; PCA colour jitter
          (AlexNet, Krizhevsky et al. 2012); cutout (DeVries & Taylor 2017)
  batch   mixup (Zhang et al. 2018); cutmix (Yun et al. 2019): return two label sets
          and the mixing weight
  1-D     circular shift, amplitude scale, Gaussian noise (noise also for vectors)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from coach.config import AugmentConfig


def _u(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def hflip(x: Tensor, g: torch.Generator) -> Tensor:
    flip = torch.rand(len(x), generator=g, device=x.device) < 0.5
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def random_crop(x: Tensor, pad: int, g: torch.Generator) -> Tensor:
    """Zero-pad by `pad` and crop back to the original size at a random offset per sample."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_resized_crop(x: Tensor, scale: tuple[float, float], ratio: tuple[float, float], g: torch.Generator) -> Tensor:
    """Crop a random area fraction and aspect ratio per sample, resize back (bilinear)."""
    n, dev = len(x), x.device
    area = _u(n, *scale, g, dev)
    log_r = _u(n, math.log(ratio[0]), math.log(ratio[1]), g, dev)
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    tx = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - sw)
    ty = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - sh)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw, tx, sh, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def brightness_contrast(x: Tensor, brightness: float, contrast: float, g: torch.Generator) -> Tensor:
    shape = (len(x),) + (1,) * (x.dim() - 1)
    if contrast:
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        x = (x - mean) * _u(len(x), 1 - contrast, 1 + contrast, g, x.device).view(shape) + mean
    if brightness:
        x = x + _u(len(x), -brightness, brightness, g, x.device).view(shape)
    return x


def pca_colour(x: Tensor, eigvals: Tensor, eigvecs: Tensor, std: float, g: torch.Generator) -> Tensor:
    """AlexNet's colour jitter: add eigvecs @ (alpha * eigvals), alpha ~ N(0, std^2) per sample."""
    alpha = torch.randn(len(x), len(eigvals), generator=g, device=x.device) * std
    shift = (alpha * eigvals) @ eigvecs.T  # (N, C)
    return x + shift.view(len(x), -1, *([1] * (x.dim() - 2)))


def colour_pca(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (as std devs) and eigenvectors of the channel covariance of training images."""
    c = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    vals, vecs = torch.linalg.eigh(torch.cov(c).reshape(x.shape[1], x.shape[1]))
    return vals.clamp_min(0).sqrt().float(), vecs.float()


def _boxes(n: int, h: int, w: int, side_h: Tensor, side_w: Tensor, g: torch.Generator, dev: torch.device) -> Tensor:
    """A boolean (N, 1, H, W) mask of one box per sample, centre uniform over the image."""
    cy = torch.randint(0, h, (n,), generator=g, device=dev)
    cx = torch.randint(0, w, (n,), generator=g, device=dev)
    ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_y = (ys[None] >= (cy - side_h // 2)[:, None]) & (ys[None] < (cy - side_h // 2 + side_h)[:, None])
    in_x = (xs[None] >= (cx - side_w // 2)[:, None]) & (xs[None] < (cx - side_w // 2 + side_w)[:, None])
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def cutout(x: Tensor, size: int, g: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    side = torch.full((n,), size, device=x.device)
    return x.masked_fill(_boxes(n, h, w, side, side, g, x.device), 0.0)


def beta(alpha: float, g: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha) from the generator g.

    torch's Beta/Gamma samplers take no generator (they read the global RNG, which a resumed
    run or another transform would move), so g seeds numpy's exact Beta sampler instead."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(x: Tensor, y: Tensor, alpha: float, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    lam = beta(alpha, g) if alpha > 0 else 1.0
    perm = torch.randperm(len(x), generator=g, device=x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def cutmix(x: Tensor, y: Tensor, alpha: float, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    n, _, h, w = x.shape
    lam = beta(alpha, g)
    perm = torch.randperm(n, generator=g, device=x.device)
    side_h = torch.full((1,), int(h * math.sqrt(1 - lam)), device=x.device)
    side_w = torch.full((1,), int(w * math.sqrt(1 - lam)), device=x.device)
    box = _boxes(1, h, w, side_h, side_w, g, x.device)
    lam = 1.0 - box.float().mean().item()  # the area actually pasted
    return torch.where(box, x[perm], x), y, y[perm], lam


def shift_1d(x: Tensor, max_shift: int, g: torch.Generator) -> Tensor:
    n, _, length = x.shape
    s = torch.randint(-max_shift, max_shift + 1, (n,), generator=g, device=x.device)
    idx = (torch.arange(length, device=x.device)[None] - s[:, None]) % length
    return x.gather(2, idx[:, None, :].expand_as(x))


class Augment:
    """The configured pipeline. Call with (x, y); returns (x, y_a, y_b, lam): y_b is y_a
    and lam 1.0 unless mixup or cutmix mixed the batch."""

    def __init__(self, cfg: AugmentConfig, kind: str, train_x: Tensor | None = None):
        self.cfg, self.kind = cfg, kind
        image_only = [k for k in ("hflip", "crop_padding", "resized_crop", "cutout", "cutmix", "pca_jitter")
                      if getattr(cfg, k)]
        if kind != "image" and image_only:
            from coach.errors import UserError
            raise UserError(f"augment.{image_only[0]}: only for images; this data is {kind} "
                            "(use augment.shift, augment.scale or augment.noise)")
        self.pca = colour_pca(train_x) if cfg.pca_jitter and train_x is not None else None

    @property
    def active(self) -> bool:
        return any(v for v in self.cfg.model_dump().values() if not isinstance(v, tuple))

    def __call__(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
        c = self.cfg
        if self.kind == "image":
            if c.resized_crop:
                x = random_resized_crop(x, c.crop_scale, c.crop_ratio, g)
            if c.crop_padding:
                x = random_crop(x, c.crop_padding, g)
            if c.hflip:
                x = hflip(x, g)
            if c.brightness or c.contrast:
                x = brightness_contrast(x, c.brightness, c.contrast, g)
            if self.pca is not None:
                x = pca_colour(x, self.pca[0].to(x.device), self.pca[1].to(x.device), c.pca_jitter, g)
            if c.cutout:
                x = cutout(x, c.cutout, g)
        elif self.kind == "signal":
            if c.shift:
                x = shift_1d(x, c.shift, g)
            if c.scale:
                x = x * _u(len(x), 1 - c.scale, 1 + c.scale, g, x.device).view(-1, 1, 1)
        if c.noise:
            x = x + torch.randn(x.shape, generator=g, device=x.device) * c.noise
        if c.cutmix and c.mixup:  # both asked for: each batch gets one of them, even odds (as timm does)
            use_cutmix = bool(torch.rand((), generator=g, device=g.device) < 0.5)
            return cutmix(x, y, c.cutmix, g) if use_cutmix else mixup(x, y, c.mixup, g)
        if c.cutmix:
            return cutmix(x, y, c.cutmix, g)
        if c.mixup:
            return mixup(x, y, c.mixup, g)
        return x, y, y, 1.0
