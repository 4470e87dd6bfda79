"""Activation functions from CS231n lecture 6, selectable by name.

torch provides all but Maxout (Goodfellow et al. 2013), written here. A Maxout unit is
max over k linear pieces: the layer before it produces k times the channels and
`Maxout(pieces=k)` takes the max over each group of k. Model builders read the
`pieces` attribute to widen that layer.
"""
from __future__ import annotations

from torch import Tensor, nn

from coach.config import ACTIVATIONS
from coach.errors import UserError

# SELU's constants (Klambauer et al. 2017), as torch uses them.
SELU_ALPHA = 1.6732632423543772
SELU_LAMBDA = 1.0507009873554805


class Maxout(nn.Module):
    """Max over groups of `pieces` consecutive channels: (N, C*k, ...) -> (N, C, ...)."""

    def __init__(self, pieces: int = 2):
        super().__init__()
        if pieces < 2 or pieces != int(pieces):
            raise UserError(f"model.activation_kwargs.pieces: maxout needs a whole number >= 2, got {pieces}")
        self.pieces = int(pieces)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        if c % self.pieces:
            raise ValueError(f"Maxout: {c} channels are not divisible by pieces={self.pieces}")
        return x.view(n, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def _register(name: str, factory, **defaults: float) -> None:
    """Register factory(**kwargs) under name, accepting only the keyword arguments in defaults."""

    def build(**kwargs: float) -> nn.Module:
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise UserError(f"model.activation_kwargs: {sorted(unknown)} not accepted by {name}; "
                            f"allowed: {sorted(defaults) or 'none'}")
        return factory(**{**defaults, **kwargs})

    ACTIVATIONS.register(name)(build)


_register("sigmoid", nn.Sigmoid)
_register("tanh", nn.Tanh)
_register("relu", nn.ReLU)
_register("leaky_relu", lambda slope: nn.LeakyReLU(slope), slope=0.01)
_register("prelu", lambda init: nn.PReLU(init=init), init=0.25)  # alpha is learned
_register("elu", lambda alpha: nn.ELU(alpha), alpha=1.0)
_register("selu", nn.SELU)
_register("gelu", nn.GELU)
_register("maxout", lambda pieces: Maxout(int(pieces)), pieces=2)

#: module types that count as an activation (the init report hooks these)
ACTIVATION_TYPES = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, Maxout)


def make_activation(name: str, **kwargs: float) -> nn.Module:
    return ACTIVATIONS.get(name, "model.activation")(**kwargs)


def gain(name: str, **kwargs: float) -> float:
    """Kaiming's gain for an activation: sqrt(2) for ReLU, sqrt(2/(1+a^2)) for leaky, 5/3 tanh."""
    if name in ("relu", "maxout", "gelu", "elu"):
        return nn.init.calculate_gain("relu")
    if name == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", kwargs.get("slope", 0.01))
    if name == "prelu":
        return nn.init.calculate_gain("leaky_relu", kwargs.get("init", 0.25))
    if name == "tanh":
        return nn.init.calculate_gain("tanh")
    return 1.0  # sigmoid, selu (LeCun normal keeps SELU self-normalizing)
