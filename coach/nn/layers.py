"""Regularizing layers from CS231n lectures 6-7: training adds noise, testing averages it out.

Probabilities: every layer here takes the DROP probability `p` (torch's and Keras'
convention). The lectures write dropout with the KEEP probability; `keep=` is accepted
wherever `p` is, and `keep = 1 - p`.

  Dropout           inverted dropout (Srivastava et al. 2014): scale by 1/keep in training,
                    identity at test (torch.nn.Dropout underneath)
  SpatialDropout    drops whole channels (Tompson et al. 2015)
  DropConnectLinear drops individual weights in training, uses all weights at test
                    (Wan et al. 2013), inverted scaling like dropout
  StochasticDepth   skips a residual branch per sample in training (Huang et al. 2016)
  FractionalMaxPool pooling regions of random, non-integer stride (Graham 2014); fixed
                    pseudo-random regions at test so evaluation is deterministic
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def drop_probability(p: float | None = None, keep: float | None = None) -> float:
    if (p is None) == (keep is None):
        raise ValueError("give exactly one of p (drop probability) or keep (keep probability)")
    drop = p if p is not None else 1.0 - keep  # type: ignore[operator]
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop probability must be in [0, 1), got {drop}")
    return drop


class Dropout(nn.Dropout):
    """Inverted dropout. p = DROP probability; or pass keep= as in the lectures."""

    def __init__(self, p: float | None = None, keep: float | None = None):
        super().__init__(drop_probability(p, keep))


class SpatialDropout(nn.Module):
    """Drops entire channels of (N, C, ...) inputs; p = DROP probability."""

    def __init__(self, p: float | None = None, keep: float | None = None):
        super().__init__()
        self.p = drop_probability(p, keep)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.empty(x.shape[:2] + (1,) * (x.dim() - 2), device=x.device, dtype=x.dtype)
        return x * mask.bernoulli_(1 - self.p) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(nn.Linear):
    """A Linear layer whose weights are dropped (p = DROP probability) during training."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float | None = None,
                 keep: float | None = None):
        super().__init__(in_features, out_features, bias)
        self.p = drop_probability(p, keep)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        mask = torch.empty_like(self.weight).bernoulli_(1 - self.p)
        return F.linear(x, self.weight * mask / (1 - self.p), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


class StochasticDepth(nn.Module):
    """Wraps a residual branch: in training the branch is dropped for each sample with
    probability p (and scaled by 1/(1-p) when kept), so at test it is used as is."""

    def __init__(self, branch: nn.Module, p: float):
        super().__init__()
        self.branch = branch
        self.p = drop_probability(p)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)
        if not self.training or self.p == 0:
            return out
        keep = torch.empty((out.shape[0],) + (1,) * (out.dim() - 1), device=out.device, dtype=out.dtype)
        return out * keep.bernoulli_(1 - self.p) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def survival_drop_probabilities(n_blocks: int, p_last: float) -> list[float]:
    """Huang et al.'s linear decay rule: block l of L is dropped with probability l/L * p_L."""
    return [(i + 1) / n_blocks * p_last for i in range(n_blocks)]


class FractionalMaxPool(nn.Module):
    """Fractional max pooling by `ratio` (e.g. 1/sqrt(2)) for 1-D and 2-D inputs.

    Training draws new pseudo-random pooling regions each call (torch's
    FractionalMaxPool2d); evaluation uses one fixed draw, so results are deterministic.
    """

    def __init__(self, ratio: float = 0.7071, dims: int = 2):
        super().__init__()
        if not 0 < ratio < 1:
            raise ValueError(f"FractionalMaxPool ratio must be in (0, 1), got {ratio}")
        self.ratio, self.dims = ratio, dims

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.unsqueeze(2) if self.dims == 1 else x
        h, w = x2.shape[-2:]
        out_hw = (1 if self.dims == 1 else max(1, int(h * self.ratio)), max(1, int(w * self.ratio)))
        kernel = (1 if self.dims == 1 else 2, 2)
        samples = None
        if not self.training:
            samples = torch.full((x2.shape[0], x2.shape[1], 2), 0.5, device=x.device, dtype=x.dtype)
        out = F.fractional_max_pool2d(x2, kernel, output_size=out_hw, _random_samples=samples)
        return out.squeeze(2) if self.dims == 1 else out

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, dims={self.dims}"
