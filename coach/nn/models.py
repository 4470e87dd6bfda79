"""Model builders for 1-D signals and 2-D images (and flat vectors, for the MLP).

Every model is a `CoachModel`: preprocessing (fitted on the training split) ->
feature extractor -> linear head. The head can be replaced for a new class count
(`reset_head`), which transfer learning needs; `features` is everything below it.

  mlp      Flatten -> [Linear -> BatchNorm -> activation -> Dropout] x depth
  convnet  VGG-style stages (Simonyan & Zisserman 2015): `blocks` 3x3 convs with
           batch norm and the activation, then 2x pooling; channels double per stage;
           average pooling to at most 4x4, flatten -> dropout
  resnet   He et al. 2016 basic blocks (two 3x3 convs, identity or 1x1 shortcut), with
           optional stochastic depth whose drop probability grows linearly with depth
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import Tensor, nn

from coach.config import MODELS, ModelConfig, RegularizeConfig
from coach.errors import UserError
from coach.nn.activations import make_activation
from coach.nn.init import initialize, xavier
from coach.nn.layers import DropConnectLinear, Dropout, FractionalMaxPool, SpatialDropout, StochasticDepth, \
    survival_drop_probabilities


class CoachModel(nn.Module):
    """preprocess -> features -> head. `features(x)` returns (N, feature_dim)."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, preprocess: nn.Module | None = None):
        super().__init__()
        # a copy: the data's fitted preprocessing is shared by every model built on them, and moving
        # one model to a GPU moves its modules in place (the autopilot's next model, on the CPU, broke)
        self.preprocess = copy.deepcopy(preprocess) if preprocess is not None else nn.Identity()
        self.features = features
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.preprocess(x)))

    def embed(self, x: Tensor) -> Tensor:
        """Features of raw inputs (preprocessing applied): what a linear probe sees."""
        return self.features(self.preprocess(x))

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def reset_head(self, num_classes: int) -> nn.Linear:
        """A fresh head for num_classes (Xavier weights, zero bias), on the old head's device."""
        old = self.head
        self.head = nn.Linear(self.feature_dim, num_classes).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            xavier(self.head.weight, 1.0)
            self.head.bias.zero_()
        return self.head


ActFactory = Callable[[], nn.Module]


def _conv_ops(input_shape: tuple[int, ...], model: str) -> tuple[type, type, type, type]:
    if len(input_shape) == 3:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d
    if len(input_shape) == 2:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d
    raise UserError(f"model.name: {model} needs images (C x H x W) or signals (C x L); these inputs are "
                    f"vectors of shape {tuple(input_shape)}: use model.name=mlp")


def _pool(kind: str, dims: int, maxpool: type, avgpool: type) -> nn.Module:
    if kind == "fractional":
        return FractionalMaxPool(1 / math.sqrt(2), dims)
    return (maxpool if kind == "max" else avgpool)(2)


@MODELS.register("mlp")
def mlp(cfg: ModelConfig, reg: RegularizeConfig, input_shape: tuple[int, ...], act: ActFactory) -> tuple[nn.Module, int]:
    hidden = cfg.hidden if cfg.hidden is not None else [cfg.width] * cfg.depth
    layers: list[nn.Module] = [nn.Flatten()]
    d = math.prod(input_shape)
    for h in hidden:
        a = act()
        out = h * getattr(a, "pieces", 1)
        bias = cfg.norm == "none"
        layers.append(DropConnectLinear(d, out, bias, p=reg.dropconnect) if reg.dropconnect else nn.Linear(d, out, bias))
        if cfg.norm == "batch":
            layers.append(nn.BatchNorm1d(out))
        layers.append(a)
        if reg.dropout:
            layers.append(Dropout(reg.dropout))
        d = h
    return nn.Sequential(*layers), d


@MODELS.register("convnet")
def convnet(cfg: ModelConfig, reg: RegularizeConfig, input_shape: tuple[int, ...], act: ActFactory) -> tuple[nn.Module, int]:
    conv, bn, maxpool, avgpool = _conv_ops(input_shape, "convnet")
    dims = len(input_shape) - 1
    c_in, size = input_shape[0], min(input_shape[1:])
    layers: list[nn.Module] = []
    for stage in range(cfg.depth):
        c = cfg.width * 2**stage
        for _ in range(cfg.blocks):
            a = act()
            out = c * getattr(a, "pieces", 1)
            layers.append(conv(c_in, out, 3, padding=1, bias=cfg.norm == "none"))
            if cfg.norm == "batch":
                layers.append(bn(out))
            layers.append(a)
            c_in = c
        if reg.spatial_dropout:
            layers.append(SpatialDropout(reg.spatial_dropout))
        if size >= 2:  # small inputs (8x8 digits) run out of room to pool: stop halving
            layers.append(_pool(cfg.pool, dims, maxpool, avgpool))
            size = int(size / math.sqrt(2)) if cfg.pool == "fractional" else size // 2
    # VGG keeps the spatial layout for its classifier: average down to at most 4x4 (4 for
    # signals) and flatten, rather than global pooling that discards where things are.
    keep = min(size, 4)
    layers += [nn.AdaptiveAvgPool2d(keep) if dims == 2 else nn.AdaptiveAvgPool1d(keep), nn.Flatten()]
    if reg.dropout:
        layers.append(Dropout(reg.dropout))
    return nn.Sequential(*layers), c_in * keep**dims


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the shortcut is identity or a strided 1x1 conv."""

    def __init__(self, conv: type, bn: type, c_in: int, c_out: int, stride: int, act: ActFactory,
                 norm: bool, drop: float):
        super().__init__()
        norm_layer = (lambda c: bn(c)) if norm else (lambda c: nn.Identity())
        branch = nn.Sequential(conv(c_in, c_out, 3, stride, 1, bias=not norm), norm_layer(c_out), act(),
                               conv(c_out, c_out, 3, 1, 1, bias=not norm), norm_layer(c_out))
        self.branch = StochasticDepth(branch, drop) if drop > 0 else branch
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            conv(c_in, c_out, 1, stride, bias=not norm), norm_layer(c_out))
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.branch(x))


@MODELS.register("resnet")
def resnet(cfg: ModelConfig, reg: RegularizeConfig, input_shape: tuple[int, ...], act: ActFactory) -> tuple[nn.Module, int]:
    conv, bn, _, _ = _conv_ops(input_shape, "resnet")
    if cfg.activation == "maxout":
        raise UserError("model.activation: maxout does not fit resnet (the activation after the residual sum "
                        "cannot widen its input); use mlp or convnet for maxout")
    dims = len(input_shape) - 1
    norm = cfg.norm == "batch"
    layers: list[nn.Module] = [conv(input_shape[0], cfg.width, 3, 1, 1, bias=not norm),
                               bn(cfg.width) if norm else nn.Identity(), act()]
    drops = survival_drop_probabilities(cfg.depth * cfg.blocks, reg.stochastic_depth)
    c_in, size, i = cfg.width, min(input_shape[1:]), 0
    for stage in range(cfg.depth):
        c = cfg.width * 2**stage
        for b in range(cfg.blocks):
            stride = 2 if stage > 0 and b == 0 and size >= 2 else 1
            size = (size + 1) // 2 if stride == 2 else size
            layers.append(BasicBlock(conv, bn, c_in, c, stride, act, norm, drops[i]))
            c_in, i = c, i + 1
    layers += [nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1), nn.Flatten()]
    if reg.dropout:
        layers.append(Dropout(reg.dropout))
    return nn.Sequential(*layers), c_in


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
                reg: RegularizeConfig | None = None, preprocess: nn.Module | None = None,
                batch: Tensor | None = None) -> CoachModel:
    """Build and initialize the named model for inputs of input_shape (before preprocessing).

    batch: raw training inputs, needed by data-dependent initialization (LSUV).
    """
    reg = reg or RegularizeConfig()
    shape = tuple(getattr(preprocess, "output_shape", input_shape))
    act = lambda: make_activation(cfg.activation, **cfg.activation_kwargs)  # noqa: E731
    act()  # fail early, with the config key, on bad activation arguments
    features, dim = MODELS.get(cfg.name, "model.name")(cfg, reg, shape, act)
    model = CoachModel(features, dim, num_classes, preprocess)
    initialize(model, cfg.init, cfg.activation, cfg.activation_kwargs, batch=batch, head=model.head,
               **cfg.init_kwargs)
    return model
