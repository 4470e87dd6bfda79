import pytest
import torch
from torch import nn

from coach.config import ACTIVATIONS
from coach.errors import UserError
from coach.nn.activations import SELU_ALPHA, SELU_LAMBDA, Maxout, make_activation


def test_all_lecture_activations_are_registered():
    assert set(ACTIVATIONS.names()) == {"sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu",
                                        "maxout"}


def test_against_closed_forms():
    x = torch.linspace(-3, 3, 101)
    assert torch.allclose(make_activation("leaky_relu")(x), torch.where(x > 0, x, 0.01 * x))
    assert torch.allclose(make_activation("elu")(x), torch.where(x > 0, x, torch.exp(x) - 1))
    selu = torch.where(x > 0, SELU_LAMBDA * x, SELU_LAMBDA * SELU_ALPHA * (torch.exp(x) - 1))
    assert torch.allclose(make_activation("selu")(x), selu, atol=1e-6)
    assert torch.allclose(make_activation("sigmoid")(x), 1 / (1 + torch.exp(-x)))


def test_prelu_alpha_is_learned():
    act = make_activation("prelu")
    assert isinstance(act, nn.PReLU) and act.weight.requires_grad
    act(-torch.ones(3)).sum().backward()
    assert act.weight.grad is not None and act.weight.grad.abs().sum() > 0


def test_maxout_takes_max_over_groups():
    x = torch.randn(4, 6, 5)
    out = Maxout(3)(x)
    assert out.shape == (4, 2, 5)
    assert torch.equal(out, torch.stack([x[:, 0:3].amax(1), x[:, 3:6].amax(1)], 1))


def test_bad_kwargs_name_the_key():
    with pytest.raises(UserError, match="activation_kwargs"):
        make_activation("relu", slope=0.2)
    with pytest.raises(UserError, match="pieces"):
        make_activation("maxout", pieces=1)
