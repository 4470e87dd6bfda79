import math

import pytest
import torch
from torch import nn

from coach.nn.init import fan_in, initialize


def _std(m):
    return m.weight.std().item()


@pytest.mark.parametrize("layer, din", [(nn.Linear(400, 300), 400), (nn.Conv2d(16, 300, 5), 16 * 25)])
def test_fan_in_and_xavier_kaiming(layer, din):
    assert fan_in(layer.weight) == din
    initialize(layer, "xavier")
    assert _std(layer) == pytest.approx(1 / math.sqrt(din), rel=0.05)
    initialize(layer, "kaiming", "relu")
    assert _std(layer) == pytest.approx(math.sqrt(2 / din), rel=0.05)
    initialize(layer, "kaiming", "tanh")
    assert _std(layer) == pytest.approx(5 / 3 / math.sqrt(din), rel=0.05)
    initialize(layer, "xavier", distribution="uniform")
    assert _std(layer) == pytest.approx(1 / math.sqrt(din), rel=0.05)
    assert layer.weight.abs().max() <= math.sqrt(3 / din) + 1e-6
    assert layer.bias.abs().max() == 0


def test_small_and_orthogonal():
    layer = nn.Linear(256, 256)
    initialize(layer, "small")
    assert _std(layer) == pytest.approx(0.01, rel=0.05)
    initialize(layer, "small", std=0.05)
    assert _std(layer) == pytest.approx(0.05, rel=0.05)
    initialize(layer, "orthogonal", "linear")
    assert torch.allclose(layer.weight @ layer.weight.T, torch.eye(256), atol=1e-4)


def test_lsuv_gives_unit_variance_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 200))
    x = torch.randn(512, 50) * 7
    initialize(net, "lsuv", "tanh", batch=x)
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o.var().item())) for m in net if
             isinstance(m, nn.Linear)]
    net(x)
    for h in hooks:
        h.remove()
    assert all(abs(v - 1) < 0.1 for v in outs)


def test_lsuv_needs_a_batch():
    from coach.errors import UserError
    with pytest.raises(UserError, match="lsuv"):
        initialize(nn.Linear(3, 3), "lsuv")
