import pytest
import torch
from torch import nn

import coach
from coach.config import ModelConfig, RegularizeConfig
from coach.nn import DropConnectLinear, FractionalMaxPool, Maxout, SpatialDropout, StochasticDepth
from coach.nn.gradcheck import verdict


def _check(net, x, classes=3, fixed_noise=False):
    y = torch.arange(len(x)) % classes
    return coach.gradcheck(net, x, y, per_param=6, fixed_noise=fixed_noise)


@pytest.mark.parametrize("layer, shape", [
    (nn.Sequential(nn.Linear(6, 12), Maxout(3), nn.Linear(4, 3)), (5, 6)),
    (nn.Sequential(DropConnectLinear(6, 8, p=0.5), nn.Tanh(), nn.Linear(8, 3)), (5, 6)),
    (nn.Sequential(nn.Conv2d(2, 4, 3), SpatialDropout(p=0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (5, 2, 6, 6)),
    (nn.Sequential(StochasticDepth(nn.Linear(6, 6), p=0.5), nn.Linear(6, 3)), (5, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), FractionalMaxPool(0.7), nn.Flatten(), nn.Linear(3 * 16, 3)),
     (5, 2, 6, 6)),
])
def test_custom_layers_pass(layer, shape):
    torch.manual_seed(0)
    result = _check(layer, torch.randn(shape))
    assert result.passed and result.max_rel_error < 1e-4, str(result)


STOCHASTIC = [
    (nn.Sequential(nn.Linear(6, 8), nn.Tanh(), DropConnectLinear(8, 8, p=0.5), nn.Tanh(), nn.Linear(8, 3)), (5, 6)),
    (nn.Sequential(nn.Conv2d(2, 4, 3), SpatialDropout(p=0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (5, 2, 6, 6)),
    (nn.Sequential(nn.Linear(6, 6), StochasticDepth(nn.Sequential(nn.Tanh(), nn.Linear(6, 6)), p=0.5),
                   nn.Linear(6, 3)), (8, 6)),
    (nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3)), (5, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), FractionalMaxPool(0.7), nn.Flatten(), nn.Linear(3 * 16, 3)),
     (5, 2, 6, 6)),
]


@pytest.mark.parametrize("layer, shape", STOCHASTIC, ids=["dropconnect", "spatial", "depth", "dropout", "fmp"])
def test_stochastic_layers_pass_in_train_mode_with_fixed_masks(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    state = torch.random.get_rng_state()
    result = _check(layer, x, fixed_noise=True)
    assert result.passed and result.max_rel_error < 1e-4, str(result)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    # the masks really act in this mode: the training output differs from the test-time one
    layer.train()
    torch.manual_seed(0)
    noisy = layer(x)
    assert not torch.allclose(noisy, layer.eval()(x))


class _DetachedDropConnect(DropConnectLinear):
    """A planted bug only training mode shows: the masked weights are cut from the graph."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        mask = torch.empty_like(self.weight).bernoulli_(1 - self.p)
        return torch.nn.functional.linear(x, (self.weight * mask / (1 - self.p)).detach(), self.bias)


def test_a_bug_in_the_masked_path_is_found_only_with_fixed_noise():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), _DetachedDropConnect(8, 8, p=0.5), nn.Linear(8, 3))
    x = torch.randn(5, 6)
    assert _check(net, x).passed  # eval mode: DropConnect is a plain Linear, the bug is invisible
    result = _check(net, x, fixed_noise=True)
    assert not result.passed and result.worst().name == "2.weight"


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet"])
def test_models_pass(name):
    torch.manual_seed(0)
    reg = RegularizeConfig(dropout=0.2, dropconnect=0.2 if name == "mlp" else 0.0)
    model = coach.build_model(ModelConfig(name=name, width=4, depth=2, blocks=1, activation="tanh"), (1, 6, 6), 3,
                              reg)
    result = _check(model, torch.randn(4, 1, 6, 6))
    assert result.passed, str(result)


class _WrongGrad(torch.autograd.Function):
    """y = x^2 with a planted bug: the backward forgets the factor 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x


class _BuggySquare(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return x @ _WrongGrad.apply(self.w)


def test_planted_backward_bug_is_found():
    torch.manual_seed(0)
    result = _check(_BuggySquare(), torch.randn(5, 4))
    assert not result.passed and result.worst().name == "w" and result.verdict == "wrong"


def test_verdict_thresholds():
    assert verdict(1e-1) == "wrong" and verdict(1e-3) == "uncomfortable" and verdict(1e-5) == "ok"
    assert verdict(1e-9) == "good" and verdict(float("nan")) == "wrong"
