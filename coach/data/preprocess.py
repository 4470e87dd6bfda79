"""Input preprocessing from CS231n lecture 6 ("Data preprocessing").

Fitted on the training split only, kept as buffers of a module that is the first stage
of every coach model, so evaluation and prediction apply exactly what training did.

modes:
  none          identity
  mean_image    subtract the mean image (AlexNet)
  channel_mean  subtract the per-channel mean (VGG)
  standardize   per-channel mean and std (ResNet)
  pca           centre, project on the top principal components (k, or a variance fraction)
  zca           centre, ZCA-whiten with epsilon added to the eigenvalues (Bell & Sejnowski 1997)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from coach.errors import UserError

MODES = ("none", "mean_image", "channel_mean", "standardize", "pca", "zca")


class Preprocessor(nn.Module):
    def __init__(self, mode: str, input_shape: tuple[int, ...], components: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"data.preprocess: unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        self.mode = mode
        self.input_shape = tuple(input_shape)
        dim = math.prod(input_shape)
        channels = input_shape[0]
        stat_shape = {"mean_image": input_shape, "channel_mean": (channels,), "standardize": (channels,),
                      "pca": (dim,), "zca": (dim,)}.get(mode, (0,))
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape if mode == "standardize" else (0,)))
        k = components or dim
        proj = {"pca": (dim, k), "zca": (dim, dim)}.get(mode, (0, 0))
        self.register_buffer("proj", torch.zeros(proj))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.proj.shape[1],) if self.mode == "pca" else self.input_shape

    def _channel_view(self, t: Tensor) -> Tensor:
        return t.view(1, -1, *([1] * (len(self.input_shape) - 1)))

    @torch.no_grad()
    def fit(self, x: Tensor, components: float | None = None, epsilon: float = 1e-2) -> "Preprocessor":
        """Fit statistics on training inputs x (N, *input_shape). Returns self."""
        x = x.double()
        if self.mode == "mean_image":
            self.mean = x.mean(0).float()
        elif self.mode in ("channel_mean", "standardize"):
            per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
            self.mean = per_channel.mean(1).float()
            if self.mode == "standardize":
                self.std = per_channel.std(1).clamp_min(1e-8).float()
        elif self.mode in ("pca", "zca"):
            flat = x.reshape(len(x), -1)
            mean = flat.mean(0)
            centred = flat - mean
            cov = centred.T @ centred / max(len(flat) - 1, 1)
            evals, evecs = torch.linalg.eigh(cov)  # ascending
            evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
            self.mean = mean.float()
            if self.mode == "pca":
                k = _n_components(components, evals)
                self.proj = evecs[:, :k].float().contiguous()
            else:
                self.proj = (evecs @ torch.diag(1.0 / torch.sqrt(evals + epsilon)) @ evecs.T).float()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        if self.mode == "mean_image":
            return x - self.mean
        if self.mode == "channel_mean":
            return x - self._channel_view(self.mean)
        if self.mode == "standardize":
            return (x - self._channel_view(self.mean)) / self._channel_view(self.std)
        flat = x.reshape(len(x), -1) - self.mean
        out = flat @ self.proj
        return out if self.mode == "pca" else out.view(x.shape)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, input_shape={self.input_shape}, output_shape={self.output_shape}"


def _n_components(components: float | None, evals: Tensor) -> int:
    dim = len(evals)
    if components is None:
        return dim
    if components >= 1:
        if components != int(components) or components > dim:
            raise UserError(f"data.pca_components: {components} must be a whole number of components <= {dim} "
                            "or a variance fraction < 1")
        return int(components)
    explained = torch.cumsum(evals, 0) / evals.sum().clamp_min(1e-12)
    return int(torch.searchsorted(explained, torch.tensor(components, dtype=explained.dtype)).item()) + 1


def fit_preprocessor(mode: str, x_train: Tensor, components: float | None = None,
                     epsilon: float = 1e-2) -> Preprocessor:
    """Build and fit in one go (PCA's output size is known only after the fit)."""
    return Preprocessor(mode, tuple(x_train.shape[1:])).fit(x_train, components, epsilon)


def input_stats(x: Tensor, n: int = 10_000) -> dict[str, float]:
    """The range and spread of raw inputs (a sample of n), kept with a run so that prediction
    can tell inputs on another scale (coach predict, Run.predict)."""
    v = x[:n].float()
    return {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std())} \
        if v.numel() > 1 else {}


def scale_mismatch(train: dict[str, float] | None, x: Tensor) -> str | None:
    """A warning (input_scale_mismatch) when inputs given to predict are on another scale than
    the training inputs, e.g. 0-255 images for a model trained on 0-1: their spread differs
    over 10x. The model's preprocessing was fitted on the training scale, so it would not undo it."""
    if not train or train.get("std", 0.0) <= 0 or not x.is_floating_point() or x.numel() < 2:
        return None
    spread = float(x.float().std())
    ratio = spread / train["std"]
    if spread <= 0 or 0.1 <= ratio <= 10:
        return None
    return (f"input_scale_mismatch: these inputs are on another scale than the training inputs (spread {spread:.3g} "
            f"against {train['std']:.3g}, {ratio:.3g}x; range {float(x.min()):.3g}..{float(x.max()):.3g} against "
            f"{train['min']:.3g}..{train['max']:.3g}): scale them as at training"
            + (" (divide by 255?)" if 100 < ratio < 600 else ""))
