import pytest
import torch
import torch.nn.functional as F

from coach.nn.layers import (DropConnectLinear, Dropout, FractionalMaxPool, SpatialDropout, StochasticDepth,
                             survival_drop_probabilities)


def test_dropout_p_is_drop_probability_keep_is_its_complement():
    torch.manual_seed(0)
    a, b = Dropout(p=0.25), Dropout(keep=0.75)
    assert a.p == b.p == 0.25
    x = torch.ones(200_000)
    y = a(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted: expectation kept
    a.eval()
    assert torch.equal(a(x), x)  # test time: no noise, no scaling
    with pytest.raises(ValueError):
        Dropout(p=0.5, keep=0.5)


def test_spatial_dropout_drops_whole_channels():
    torch.manual_seed(0)
    layer = SpatialDropout(p=0.5)
    y = layer(torch.ones(8, 64, 5, 5))
    per_channel = y.view(8, 64, -1)
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()
    layer.eval()
    assert torch.equal(layer(torch.ones(2, 3, 4, 4)), torch.ones(2, 3, 4, 4))


def test_dropconnect_train_vs_eval():
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 40, p=0.5)
    x = torch.randn(16, 50)
    layer.eval()
    assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    outs = torch.stack([layer(x) for _ in range(3000)]).mean(0)
    assert torch.allclose(outs, F.linear(x, layer.weight, layer.bias), atol=0.1)  # unbiased in expectation


def test_stochastic_depth():
    assert survival_drop_probabilities(4, 0.5) == [0.125, 0.25, 0.375, 0.5]
    torch.manual_seed(0)
    layer = StochasticDepth(torch.nn.Identity(), p=0.5)
    y = layer(torch.ones(10_000, 3))
    assert ((y == 0).all(1) | (y == 2).all(1)).all()  # whole samples skip the branch
    assert (y[:, 0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    layer.eval()
    assert torch.equal(layer(torch.ones(4, 3)), torch.ones(4, 3))


@pytest.mark.parametrize("shape, out", [((2, 3, 16, 16), (2, 3, 11, 11)), ((2, 3, 40), (2, 3, 28))])
def test_fractional_max_pool(shape, out):
    layer = FractionalMaxPool(0.7071, dims=len(shape) - 2)
    torch.manual_seed(0)
    x = torch.randn(shape)
    y = layer(x)
    assert y.shape == out
    # every output is the maximum of a window of 2 (per axis) of its own channel: a pooling, not a resize
    x2 = x if x.dim() == 4 else x.unsqueeze(2)
    windows = F.max_pool2d(x2, (2 if x.dim() == 4 else 1, 2), stride=1).flatten(2)
    for n in range(shape[0]):
        for c in range(shape[1]):
            assert torch.isin(y[n, c].flatten(), windows[n, c]).all()
    assert y.mean() > x.mean() + 0.5  # maxima of pairs of N(0, 1) values
    assert not torch.equal(layer(x), layer(x))  # training: new pseudo-random regions each call
    layer.eval()
    assert torch.equal(layer(x), layer(x))  # fixed regions at test time
